"""Headless Chromium for the tests: Debian's ``chromium`` and ``chromium-driver``, driven by selenium.

``find_chromium`` installs both with apt-get when they are missing and the tests run as root (as CI does, on a
clean clone); elsewhere it says why there is no browser, and the browser tests skip with that reason.
"""

import os
import shutil
import subprocess
from pathlib import Path

# DejaVu Sans: the font matplotlib lays the inline plots' text out in, so the browser draws it as placed.
PACKAGES = ("chromium", "chromium-driver", "fonts-dejavu-core")
INSTALL_TIMEOUT_S = 900
ARTIFACTS = Path(os.environ.get("GZOO_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")


def _found() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def find_chromium() -> tuple[str, str] | str:
    """(browser, driver) paths, installing the Debian packages if need be; or the reason there are none."""
    found = _found()
    if found:
        return found
    if shutil.which("apt-get") is None:
        return f"no chromium and chromedriver on PATH, and no apt-get to install {' '.join(PACKAGES[:2])}"
    if os.geteuid() != 0:
        return f"no chromium and chromedriver on PATH; as root: apt-get install {' '.join(PACKAGES[:2])}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"{' '.join(command)} took over {INSTALL_TIMEOUT_S} s"
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"{' '.join(command)} failed: {last}"
    return _found() or f"{' '.join(PACKAGES[:2])} installed, yet chromium or chromedriver is not on PATH"


def headless_chromium(browser: str, driver: str, width: int = 1600, height: int = 1000):
    """A selenium WebDriver for headless Chromium at the given window size (no sandbox: tests may run as root)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
