import subprocess
import sys

import pytest


@pytest.mark.slow
def test_help_and_demo_run_offline():
    out = subprocess.run([sys.executable, "-m", "adaptertune", "--help"], capture_output=True, text=True, check=True).stdout
    assert "demo" in out
    res = subprocess.run([sys.executable, "-m", "adaptertune", "demo", "--rank", "8"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "identical output at init: True" in res.stdout
    assert "reloaded outputs identical: True" in res.stdout
    assert "190756" in res.stdout.replace(",", "")  # ViT-S/16, C=100, r=16: PAPER.md
    bad = subprocess.run([sys.executable, "-m", "adaptertune", "demo", "--rank", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "rank=0" in bad.stderr
