"""Main-results verdicts: agrees / disagrees / inconclusive decided by paired intervals over seeds, on hand-made runs."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from adaptertune.paper import tables, verdicts  # noqa: E402
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


def _shifts(a: float, b: float) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame({"dataset": ["a", "b", "a"], "backbone": ["s", "s", "t"], "frechet_to_source": [a, b, 7.0]})


def test_full_wins_where_the_measured_shift_is_large():
    # full FT's lead: a/s −12, b/s +32, a/t 0 points; t has one dataset, so its relative shift is 1
    far = verdicts.verdict_full_wins_shift(MAIN, _shifts(1.0, 3.0), "tuned")
    assert far.verdict == verdicts.INCONCLUSIVE and "over 3 pairs" in far.measured  # 3 pairs: a wide slope interval
    more = pd.concat([MAIN, MAIN.assign(dataset=MAIN["dataset"] + "2")], ignore_index=True)
    shifts = pd.concat([_shifts(1.0, 3.0), _shifts(1.1, 3.1).assign(dataset=["a2", "b2", "a2"])])
    assert verdicts.verdict_full_wins_shift(more, shifts, "tuned").verdict == verdicts.AGREES
    assert "b/s (shift ×" in verdicts.verdict_full_wins_shift(more, shifts, "tuned").measured
    flipped = shifts.assign(frechet_to_source=shifts["frechet_to_source"].map({1.0: 3.0, 3.0: 1.0, 1.1: 3.1, 3.1: 1.1,
                                                                                7.0: 7.0}))
    assert verdicts.verdict_full_wins_shift(more, flipped, "tuned").verdict == verdicts.DISAGREES
    none = verdicts.verdict_full_wins_shift(MAIN, _shifts(np.nan, np.nan).assign(frechet_to_source=np.nan), "tuned")
    assert none.verdict == verdicts.NOT_TESTED


def test_main_verdicts_group_replicates_by_family():
    # seed s on replicate s: three pretraining runs of family s; extra seeds on the base backbone are left out
    rep = MAIN.assign(family=MAIN["backbone"], replicate=MAIN["seed"])
    rep["backbone"] = [f"{b}.p{s}" if s else b for b, s in zip(rep["family"], rep["seed"])]
    extra = MAIN[MAIN["seed"] > 0].assign(family=MAIN["backbone"], replicate=0, test_acc=0.0)
    frame = pd.concat([rep, extra], ignore_index=True)
    v = verdicts.verdict_beats(tables.by_family(frame), "head", "beats_head", "tuned", every_pair=True)
    assert v.verdict == verdicts.AGREES and "n=3 backbones per pair" in v.measured
    assert tables.replication_unit(MAIN) == "seeds" and tables.by_family(MAIN) is MAIN


def test_full_wins_on_the_small_backbone():
    small = verdicts.verdict_full_wins_small(MAIN, "s", "t", "tuned")
    assert small.verdict == verdicts.DISAGREES  # on a, full FT trails on s and ties on t


def test_gap_verdict_and_markdown():
    v = verdicts.verdict_gap(MAIN, "tuned")
    assert v.verdict == verdicts.INCONCLUSIVE and "smaller on 0/3 pairs" in v.measured
    assert v.markdown().startswith("- **inconclusive** (tuned) — paper:")
    assert verdicts.markdown([]) == "- No runs to judge yet."


def test_verdicts_main_covers_both_protocols():
    out = verdicts.verdicts_main({"paper-recipe": MAIN, "tuned": MAIN}, ("mini-s", "mini-b"))
    assert [v.protocol for v in out].count("tuned") == [v.protocol for v in out].count("paper-recipe") == 4
    assert {v.key for v in out} == {"beats_head", "beats_full", "full_wins_far", "gap"}  # s/t are not real widths
    assert {v.verdict for v in out if v.key == "full_wins_far"} == {verdicts.NOT_TESTED}  # no shift measure given


def test_a_claim_without_runs_is_not_tested():
    v = verdicts.verdict_extended(MAIN.iloc[:0], "paper-only", "paper-recipe")
    assert v.verdict == verdicts.NOT_TESTED and v.verdict in verdicts.OUTCOMES
    both = [("x", v), ("y", verdicts.not_tested("extended", "none"))]
    assert verdicts.combine("extended", both).verdict == verdicts.NOT_TESTED


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


def test_family_frames_are_idempotent():
    rep = MAIN.assign(family=MAIN["backbone"], replicate=MAIN["seed"])
    once = tables.family_frames({"tuned": rep})["tuned"]
    assert tables.by_family(once).equals(once) and tables.replication_unit(once) == "backbones"
