"""The Fritz demo recipe at full size: what issue 16 promises of it, measured. Several minutes on 2 cores, twice
(a run, then one killed and resumed), so it runs only when asked:
``GZOO_FULL_DEMO=1 python -m pytest tests/test_fritz_demo_full.py``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from processes import kill_when

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "demo" / "styletransfer_fritz.yaml"


@pytest.mark.skipif(os.environ.get("GZOO_FULL_DEMO") != "1", reason="the full demo takes minutes; set GZOO_FULL_DEMO=1")
def test_the_fritz_demo_8bit_student_is_closer_to_the_teacher_than_identity_and_resumes_alike(tmp_path, run_gzoo,
                                                                                           gzoo_home):
    result = run_gzoo("compress", str(DEMO), "-o", str(tmp_path / "run"), "--json", timeout=1800)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    identity = summary["identity_psnr"]
    assert summary["metrics"]["psnr"] - identity >= 2.5  # the stored row: the 8-bit student
    assert summary["quantize"]["float_psnr"] - identity >= 3
    assert summary["quantize"]["int8_vs_float_psnr"] >= 35
    info = run_gzoo("info", summary["student"], "--json")
    assert json.loads(info.stdout)["size"]["packed_bytes"] <= 16_876
    board = run_gzoo("leaderboard", "--task", "style-transfer", "--format", "json")
    row = next(r for r in json.loads(board.stdout)["rows"] if r["id"] == str(Path(summary["student"]).resolve()))
    assert row["measured"]["psnr"]["value"] == pytest.approx(summary["metrics"]["psnr"])

    # Killed with no chance to save (SIGKILL) half-way, then resumed: the same student, the same numbers.
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(run)]
    env = {**os.environ, "GZOO_HOME": str(gzoo_home)}
    log = run / "log.jsonl"
    kill_when(command, env, lambda: log.is_file() and len(log.read_text().splitlines()) >= 75, 1800, poll=0.5)
    resumed = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(resumed.stdout)
    assert again["metrics"]["psnr"] == pytest.approx(summary["metrics"]["psnr"], abs=1e-9)
    assert again["quantize"] == pytest.approx(summary["quantize"])
