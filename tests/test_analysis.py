"""Failure analysis: gaps, widths, Fréchet distances, per-class errors, on hand-made inputs."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from adaptertune.paper import analysis  # noqa: E402
from frames import MAIN  # noqa: E402


def test_gap_frame_and_correlations():
    frame = analysis.gap_frame(MAIN, width={"s": 64, "t": 128}.get).assign(protocol="tuned")
    row = frame.set_index(["dataset", "backbone"]).loc[("b", "s")]
    assert row["gap_points"] == pytest.approx(32.0) and row["linear_probe_acc"] == pytest.approx(40.0)
    # full − adapter per seed: 30, 32, 34 points -> sd 2, t(0.975, 2) = 4.303: ±4.97
    assert row["gap_low"] == pytest.approx(32.0 - 4.303 * 2 / 3 ** 0.5, abs=1e-2) and row["seeds"] == 3
    corr = analysis.correlations(frame, ["linear_probe_acc", "width"])
    assert corr["pairs"].tolist() == [3, 3] and corr["spearman_rho"].notna().all() and set(corr["protocol"]) == {"tuned"}
    assert analysis.correlations(frame.iloc[:2], ["width"])["spearman_rho"].isna().all()
    assert "Spearman ρ(full FT's lead, width)" in analysis.correlation_notes(corr)


def test_failure_pairs_and_the_focus_pair_prefer_the_tuned_protocol():
    pairs = analysis.failure_pairs({"paper-recipe": MAIN, "tuned": MAIN[MAIN["dataset"] == "a"]}, "paper",
                                   width={"s": 64, "t": 128}.get)
    assert len(pairs) == 5 and pairs["frechet_to_source"].isna().all()  # ImageNet is not available offline
    assert analysis.focus_pair(pairs) == ("tuned", "a", "t")  # the widest lead among the tuned pairs
    assert "a / t** under the tuned protocol" in analysis.describe_focus(analysis.focus_pair(pairs), pairs)
    assert analysis.focus_pair(pairs.iloc[:0]) is None and "no pair" in analysis.describe_focus(None)
    assert analysis.pair_errors({}, None).empty and analysis.pair_examples({}, None)[1] == []


def test_backbone_width():


    assert analysis.backbone_width("mini-s") == 64 and analysis.backbone_width("deit_tiny_patch16_224") == 192


def test_frechet_distance_known_values():


    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert analysis.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shifted = a + np.array([2.0, 0.0, 0.0])
    assert analysis.frechet_distance(a, shifted) == pytest.approx(4.0, rel=1e-6)  # only the means differ
    with pytest.raises(ValueError, match="equal d"):
        analysis.frechet_distance(a, a[:, :2])


def test_per_class_errors_and_wrong_examples():


    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 0, 0])
    table = analysis.per_class_errors(y, pred, ["a", "b", "c"]).set_index("class_name")
    assert table["error"].tolist() == [0.5, 0.0, 1.0] and table.loc["c", "most_confused_with"] == "a"
    picks = analysis.wrong_examples(y, {"head": pred, "full": y.copy()}, per_regime=2)
    assert set(picks["regime"]) == {"head"} and len(picks) == 2 and picks["only_this_regime_wrong"].all()
    assert (picks["y_pred"] != picks["y_true"]).all()
    with pytest.raises(ValueError, match="not the same test set"):
        analysis.wrong_examples(y, {"head": pred[:3]})


def test_per_class_errors_leave_out_classes_without_test_images():
    """A partial dataset copy (or a limit) has classes with no test image: no row, rather than a NaN error."""
    table = analysis.per_class_errors(np.array([0, 0, 3]), np.array([0, 3, 0]), ["a", "b", "c", "d"])
    assert table["class_name"].tolist() == ["a", "d"] and table["error"].tolist() == [0.5, 1.0]
    assert table.loc[0, "most_confused_with"] == "d" and table["n"].tolist() == [2, 1]
    empty = analysis.per_class_errors(np.array([], dtype=int), np.array([], dtype=int), ["a", "b"])
    assert empty.empty and "error" in empty.columns
