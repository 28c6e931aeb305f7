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


@pytest.mark.slow
def test_the_run_transcript_is_one_file_both_documents_include(tmp_path):
    """README and docs/training.md show one run's output from one script, not two hand copies that drift apart (the
    run trains in the script's own throw-away home on the shipped mini backbones)."""
    from pathlib import Path

    from benchmarks import run_transcript

    root = Path(run_transcript.__file__).resolve().parents[1]
    marker = "<!-- include: benchmarks/results/run_transcript.md -->"
    assert marker in (root / "README.md").read_text() and marker in (root / "docs" / "training.md").read_text()
    out = tmp_path / "run_transcript.md"
    assert run_transcript.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert f"$ {run_transcript.COMMANDS[0]}\n" in text and "finished: test acc" in text and '"test_n": ' in text
    assert "adaptertune-run-transcript" not in text and "[threads]" not in text and text.startswith("Recorded on ")
