"""benchmarks/loader.py in its CI-size form: every format and worker count gives a row and a stamped report."""
from __future__ import annotations

import pandas as pd

from benchmarks import loader


def test_quick_loader_benchmark_writes_every_format(tmp_path):
    assert loader.main(["--quick", "--workers", "0,1", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "loader.csv")
    assert set(frame["format"]) == {"jpeg", "jpeg-256", "memory-pil", "memory-device"}
    assert (frame["images_per_s"] > 0).all() and len(frame) == 3 * 2 + 1
    assert (tmp_path / "loader.md").read_text().startswith("**QUICK")
