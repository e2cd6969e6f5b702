"""OMGD's CPU demos at full size: what issue 14 promises of them, measured. Each takes up to 15 minutes on 2
cores, so they run only when asked: ``GZOO_FULL_DEMO=1 python -m pytest tests/test_omgd_demo_full.py``."""

import json
import os
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parent.parent / "recipes" / "demo"


@pytest.mark.skipif(os.environ.get("GZOO_FULL_DEMO") != "1", reason="the full demo takes minutes; set GZOO_FULL_DEMO=1")
@pytest.mark.parametrize("recipe", [
    # Measured 2026-12-06 (2 quiet cores): 20.95 dB against an identity of 17.57 dB (3.38 dB above) in 11 min 30 s.
    "vintagify_omgd.yaml",
    # Measured 2026-12-07 (2 quiet cores): 22.68 dB against an identity of 18.93 dB (3.75 dB above) in 7 min 59 s.
    "vintagify_omgd_frozen.yaml",
])
def test_the_omgd_demo_student_is_10x_smaller_and_3_db_closer_to_vintagify_than_identity(tmp_path, run_gzoo, recipe):
    result = run_gzoo("compress", str(DEMOS / recipe), "-o", str(tmp_path / "run"), "--json", timeout=1800)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    print(recipe, json.dumps({k: summary[k] for k in ("metrics", "identity_psnr", "macs_reduction")}))
    assert summary["macs_reduction"] >= 10
    assert summary["metrics"]["psnr"] - summary["identity_psnr"] >= 3
    board = run_gzoo("leaderboard", "--task", "vintage-photo", "--format", "json")
    row = next(r for r in json.loads(board.stdout)["rows"] if r["id"] == str(Path(summary["student"]).resolve()))
    assert row["method"] == "omgd"
    assert row["measured"]["psnr"]["value"] == pytest.approx(summary["metrics"]["psnr"])
