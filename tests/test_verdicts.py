"""Main-results verdicts: agrees / disagrees / inconclusive decided by paired intervals over seeds, on hand-made runs."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from adaptertune.paper import verdicts  # noqa: E402
from frames import MAIN, _runs  # noqa: E402


def test_beats_head_on_every_pair_agrees_only_when_every_interval_clears_zero():
    v = verdicts.verdict_beats(MAIN, "head", "beats_head", "tuned", every_pair=True)
    assert v.verdict == verdicts.AGREES and "ahead on 3/3 pairs" in v.measured and v.protocol == "tuned"
    worse = MAIN.copy()
    worse.loc[(worse["dataset"] == "a") & (worse["backbone"] == "t") & (worse["method"] == "head"), "test_acc"] = 0.9
    assert verdicts.verdict_beats(worse, "head", "beats_head", "tuned", every_pair=True).verdict == verdicts.DISAGREES


def test_beats_full_on_most_pairs_needs_a_majority_of_significant_wins():
    v = verdicts.verdict_beats(MAIN, "full", "beats_full", "paper-recipe", every_pair=False)
    # a/s: adapter ahead beyond its interval; b/s: behind; a/t: exactly equal (no spread) -> undecided
    assert "ahead on 1/3 pairs, behind on 1, undecided on 1" in v.measured and v.verdict == verdicts.INCONCLUSIVE
    assert "b/s -32.00 [" in v.measured
    assert verdicts.verdict_beats(MAIN[MAIN["method"] == "head"], "full", "beats_full", "x", False) is None


def test_full_wins_far_and_small_backbone():
    far = verdicts.verdict_full_wins_far(MAIN, near=("a",), far=("b",), protocol="tuned")
    assert far.verdict == verdicts.AGREES and "s: lead under far shift − near" in far.measured
    small = verdicts.verdict_full_wins_small(MAIN, "s", "t", "tuned")
    assert small.verdict == verdicts.DISAGREES  # on a, full FT trails on s and ties on t


def test_gap_verdict_and_markdown():
    v = verdicts.verdict_gap(MAIN, "tuned")
    assert v.verdict == verdicts.INCONCLUSIVE and "smaller on 0/3 pairs" in v.measured
    assert v.markdown().startswith("- **inconclusive** (tuned) — paper:")
    assert verdicts.markdown([]) == "- No runs to judge yet."


def test_verdicts_main_covers_both_protocols():
    out = verdicts.verdicts_main({"paper-recipe": MAIN, "tuned": MAIN}, ("a",), ("b",), ("mini-s", "mini-b"))
    assert [v.protocol for v in out].count("tuned") == [v.protocol for v in out].count("paper-recipe") == 4
    assert {v.key for v in out} == {"beats_head", "beats_full", "full_wins_far", "gap"}  # s/t are not real widths


def test_one_seed_is_never_decisive():
    one = _runs({("a", "s", "head"): [0.5], ("a", "s", "adapter"): [0.9]})
    v = verdicts.verdict_beats(one, "head", "beats_head", "smoke", every_pair=True)
    assert v.verdict == verdicts.INCONCLUSIVE and "n=1" in v.measured


def test_params_verdict_is_exact():
    import pandas as pd

    pairs = pd.DataFrame({"pct_of_full_ft": [0.917, 0.917], "pct_of_backbone": [0.918, 0.918]})
    assert verdicts.verdict_params(pairs).verdict == verdicts.AGREES
    assert verdicts.verdict_params(pairs.assign(pct_of_full_ft=2.0)).verdict == verdicts.DISAGREES
    with pytest.raises(KeyError):
        verdicts.verdict_params(pd.DataFrame({"x": [1]}))
