"""The README's "Adapt your own images" transcript script, on the smoke profile: every command runs as typed, the
fit refuses nothing on an exported folder, predict and MultiTask read the fitted files, and the transcript holds no
absolute work path ("chosen lr": the [fit] line and the summary line, per fit)."""
from __future__ import annotations

import pytest

from benchmarks import own_images


@pytest.mark.slow
def test_the_transcript_script_runs_every_command_on_an_exported_folder(isolated_home):
    out = isolated_home / "own_images.md"
    assert own_images.main(["--profile", "smoke", "--per-class", "60", "--out", str(out)]) == 0
    text = out.read_text()
    for command in own_images.commands("smoke", 60):
        assert f"$ {command}\n" in text
    assert text.count("chosen lr") == 4 and "adapter: " in text and "head: " in text and "accuracy" in text
    assert "own-images-" not in text and str(isolated_home) not in text and "[threads]" not in text
