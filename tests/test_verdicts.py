"""Verdicts: sentences computed from hand-made results frames."""

import matplotlib

matplotlib.use("Agg")


from adaptertune.paper import verdicts  # noqa: E402
from frames import MAIN  # noqa: E402


def test_verdict_main_is_computed_from_the_numbers():
    text = verdicts.verdict_main(MAIN)
    assert "beats head-only on **3/3** pairs" in text and "+18.33 points" in text
    assert "beats full fine-tuning on **1/3** pairs (1 losses, 1 ties)" in text
    assert "b/s (32.00)" in text
    assert "paper: 15/15" in text
    assert verdicts.verdict_main(MAIN[MAIN["method"] == "head"]).startswith("- No pair")
