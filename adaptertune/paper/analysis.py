"""Failure analysis: where full fine-tuning beats AdapterTune, and what those pairs have in common.

The paper attributes full FT's wins to "small backbone + large domain shift". This module measures both
sides per (dataset, backbone) pair: the gap (full − adapter, from the run store), the backbone width, and
two domain-shift measures of the *frozen* pretrained features — how linearly separable the target is
(the head-only regime's accuracy, a linear probe) and how far the target's feature distribution lies from
the pretraining source's (Fréchet distance of Gaussian fits). Then per-class errors and the test images
each regime gets wrong.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from scipy import linalg, stats
from torch import nn
from torch.utils.data import Subset

from ..backbones import backbone_shape, create_backbone, data_config
from ..data import load_dataset, load_for_run, make_loader
from ..digests import backbone_digest, split_digest
from ..store import runs as run_store
from ..store.measures import cached_measure
from ..training.distributed import DistContext
from ..training.loop import extract_features
from ..profiles import profile_record
from .tables import PAIR, by_family, method_label, pair_differences, pair_means


# -- pair-level gaps and measures ---------------------------------------------------------------------------
def backbone_width(name: str) -> int:
    """Token width d of a backbone, without loading weights."""
    return backbone_shape(name)[1]


def gap_frame(df: pd.DataFrame, width: Callable[[str], int] = backbone_width) -> pd.DataFrame:
    """Per pair: seed means of each regime (points), ``gap_points`` = full − adapter with its 95% interval over seeds
    (``gap_low``, ``gap_high``; paired, n in ``seeds``), and the backbone width."""
    means = (100 * pair_means(df)).reset_index()
    lead = pair_differences(df, "full", "adapter")
    gaps = pd.DataFrame({"dataset": lead["dataset"], "backbone": lead["backbone"], "gap_points": 100 * lead["diff"],
                         "gap_low": 100 * lead["low"], "gap_high": 100 * lead["high"], "seeds": lead["n"]})
    out = means.merge(gaps, on=["dataset", "backbone"], how="inner")
    out["width"] = out["backbone"].map(width)
    out = out.rename(columns={"head": "linear_probe_acc"})  # head-only = a linear probe of the frozen features
    if "linear_probe_acc" not in out:  # no head-only runs (yet): the column exists, empty
        out.insert(2, "linear_probe_acc", np.nan)
    return out


def correlations(frame: pd.DataFrame, measures: list[str], target: str = "gap_points") -> pd.DataFrame:
    """Per protocol: Spearman ρ (and p) between the gap and each measure over pairs; NaN where fewer than 3 pairs."""
    rows = []
    for protocol, part in frame.groupby("protocol", sort=True):
        for m in measures:
            sub = part[[m, target]].dropna()
            if len(sub) >= 3 and sub[m].nunique() > 1 and sub[target].nunique() > 1:
                rho, p = stats.spearmanr(sub[m], sub[target])
            else:
                rho, p = np.nan, np.nan
            rows.append({"protocol": protocol, "measure": m, "spearman_rho": rho, "p_value": p, "pairs": len(sub)})
    return pd.DataFrame(rows, columns=["protocol", "measure", "spearman_rho", "p_value", "pairs"])


def correlation_notes(corr: pd.DataFrame) -> str:
    """Markdown: each rank correlation with its p and n, or why there is none (few pairs make these descriptive only;
    the paper's failure claims are judged in ``verdicts``)."""
    lines = []
    for _, row in corr.iterrows():
        if pd.isna(row["spearman_rho"]):
            lines.append(f"- {row['protocol']}, {row['measure']}: too few pairs ({row['pairs']}) for a correlation.")
        else:
            lines.append(f"- {row['protocol']}: Spearman ρ(full FT's lead, {row['measure']}) = {row['spearman_rho']:+.2f} "
                         f"over {row['pairs']} pairs (p = {row['p_value']:.2g}; descriptive at this n).")
    return "\n".join(lines) or "- No pairs yet."


# -- feature-distribution shift ---------------------------------------------------------------------------
def frozen_features(model: nn.Module, dataset, n: int = 1000, batch_size: int = 256, seed: int = 0) -> np.ndarray:
    """Pre-logit [CLS] features of up to ``n`` examples (seeded subset), eval transforms, no gradients.

    The linear probe's feature extractor (``loop.extract_features``), single process on CPU.
    """
    return _features(model, dataset, n, batch_size, seed)[0]


def _features(model: nn.Module, dataset, n: int, batch_size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    feats, labels = extract_features(model, Subset(dataset, pick), ctx=DistContext(0, 1, 0, torch.device("cpu")),
                                     batch_size=batch_size, precision="fp32", make_loader=make_loader, seed=seed)
    return feats.double().numpy(), labels.numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets: ``‖μa−μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature arrays must be (n, d) with equal d, got {a.shape} and {b.shape}")
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(ca @ cb)
    return float(mu @ mu + np.trace(ca + cb - 2 * np.real(root)))


def linear_probe_source(backbone: str, profile: str, pretrained: bool = True, images: int = 5000,
                        seed: int = 0) -> float | None:
    """Source validation accuracy of a logistic-regression probe on the frozen [CLS] features (a fraction): the same
    measure for every backbone, a random-init one included (seeded weights), so a dose point's x is measured, not
    assumed. ``images`` training examples (seeded subset), the whole validation split; None without an offline
    source (the paper backbones' ImageNet). Measured once per store and inputs (``store.measures``: the weights' and
    split's digests are in the key, so a re-pretrained backbone is probed again)."""
    source = source_dataset(profile)
    if source is None:
        return None
    import sklearn

    key = {"method": PROBE_VERSION, "backbone": backbone, "weights": backbone_digest(backbone, pretrained, None, profile),
           "source": source, "split": split_digest(source), "images": images, "seed": seed, "profile": profile,
           "torch": torch.__version__, "sklearn": sklearn.__version__}
    measure = lambda: _probe_source(backbone, profile, pretrained, images, seed, source)  # noqa: E731
    if key["weights"].startswith("missing:"):  # weights not written yet: nothing stable to file the value under
        return measure()
    return cached_measure("linear_probe_source", key, measure)


PROBE_VERSION = 1  # bump when _probe_source changes what it computes: the stored measurements are then ignored


def _probe_source(backbone: str, profile: str, pretrained: bool, images: int, seed: int, source: str) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(seed)  # a random-init backbone is one seeded draw
    model = create_backbone(backbone, 1, pretrained=pretrained, profile=profile)
    splits = load_dataset(source, profile=profile, seed=0, data_config=data_config(model))
    train, y_train = _features(model, splits.train, images, seed=seed)
    val, y_val = _features(model, splits.val, len(splits.val), seed=seed)
    scaler = StandardScaler().fit(train)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(train), y_train)
    return float(probe.score(scaler.transform(val), y_val))


def linear_probes(points: list[tuple[str, bool]], profile: str,
                  known: dict[tuple[str, bool], float] | None = None) -> dict[tuple[str, bool], float]:
    """:func:`linear_probe_source` of each ``(backbone, pretrained)`` point (e.g. ``controls.dose_points``), with the
    ``known`` ones kept rather than measured again; points without an offline source are left out."""
    found = dict(known or {})
    for point in points:
        if point not in found:
            found[point] = linear_probe_source(point[0], profile, point[1])
    return {point: acc for point, acc in found.items() if acc is not None}


def source_dataset(profile: str) -> str | None:
    """The pretraining corpus as a loadable dataset: fmnist_source for the mini backbones; None for ImageNet."""
    return profile_record(profile).source_dataset


def shift_measures(pairs: pd.DataFrame, profile: str, images: int = 1000) -> pd.DataFrame:
    """Per (dataset, backbone): Fréchet distance between frozen pretrained features of the target test split and
    of the source (NaN where the source is not available offline, e.g. ImageNet for the paper backbones)."""
    source = source_dataset(profile)
    if source is None:  # nothing to compare against: say so with NaN rather than loading models for nothing
        return pairs[["dataset", "backbone"]].assign(frechet_to_source=np.nan).reset_index(drop=True)
    rows = []
    for backbone, part in pairs.groupby("backbone", sort=False):
        model = create_backbone(backbone, 1, pretrained=True, profile=profile)
        cfg = data_config(model)
        ref = frozen_features(model, load_dataset(source, profile=profile, seed=0, data_config=cfg).test, images)
        for dataset in part["dataset"]:
            target = frozen_features(model, load_dataset(dataset, profile=profile, seed=0, data_config=cfg).test, images)
            rows.append({"dataset": dataset, "backbone": backbone, "frechet_to_source": frechet_distance(ref, target)})
    return pd.DataFrame(rows, columns=["dataset", "backbone", "frechet_to_source"])


def main_shifts(frames: dict[str, pd.DataFrame], profile: str, images: int = 1000) -> pd.DataFrame:
    """:func:`shift_measures` per (dataset, backbone family) of the main comparison, measured on each family's base
    backbone (the family name): the input of the "full FT wins where the shift is large" verdict."""
    parts = [by_family(df)[PAIR] for df in frames.values() if len(df)]
    if not parts:
        return pd.DataFrame(columns=PAIR + ["frechet_to_source"])
    return shift_measures(pd.concat(parts).drop_duplicates().reset_index(drop=True), profile, images=images)


def failure_pairs(frames: dict[str, pd.DataFrame], profile: str, images: int = 1000,
                  width: Callable[[str], int] = backbone_width) -> pd.DataFrame:
    """Per protocol and pair: seed means, full FT's lead with its interval and the domain-shift measures, widest lead
    first within each protocol (pairs lacking a regime are left out)."""
    parts = [gap_frame(df, width).assign(protocol=p) for p, df in frames.items()]
    pairs = pd.concat(parts, ignore_index=True) if parts else gap_frame(pd.DataFrame(columns=["dataset", "backbone",
                                                                                            "method", "seed", "test_acc"]))
    shift = shift_measures(pairs.drop_duplicates(["dataset", "backbone"]), profile, images=images)
    out = pairs.merge(shift, on=["dataset", "backbone"], how="left")
    out = out[["protocol"] + [c for c in out.columns if c != "protocol"]] if "protocol" in out else out
    return out.sort_values(["protocol", "gap_points"], ascending=[True, False]).reset_index(drop=True)


def shift_measure(pairs: pd.DataFrame) -> str:
    """The domain-shift measure to plot: the Fréchet distance where every pair has one, else the linear probe."""
    has_frechet = len(pairs) and pairs["frechet_to_source"].notna().all()
    return "frechet_to_source" if has_frechet else "linear_probe_acc"


MEASURE_LABELS = {"frechet_to_source": "Fréchet distance of the frozen target features to the source's",
                  "linear_probe_acc": "linear-probe (head-only) test accuracy (%)", "width": "backbone width d"}


def measure_label(measure: str) -> str:
    """An axis label that says what a pair-level measure is."""
    return MEASURE_LABELS.get(measure, measure.replace("_", " "))


def focus_pair(pairs: pd.DataFrame) -> tuple[str, str, str] | None:
    """(protocol, dataset, backbone) of full FT's widest lead, under the tuned protocol (the fair one) where it has
    pairs, else the paper recipe; None without a comparable pair."""
    for protocol in ("tuned", "paper-recipe"):
        part = pairs[pairs["protocol"] == protocol] if len(pairs) else pairs
        if len(part):
            row = part.sort_values("gap_points", ascending=False).iloc[0]
            return protocol, row["dataset"], row["backbone"]
    return None


def describe_focus(focus: tuple[str, str, str] | None, pairs: pd.DataFrame | None = None) -> str:
    """``dataset / backbone (protocol)`` of the focus pair (with its lead when ``pairs`` is given), or why none."""
    if focus is None:
        return "no pair with both AdapterTune and full FT runs yet"
    protocol, dataset, backbone = focus
    if pairs is None:
        return f"{dataset} / {backbone} ({protocol})"
    row = pairs[(pairs["protocol"] == protocol) & (pairs["dataset"] == dataset) & (pairs["backbone"] == backbone)].iloc[0]
    return (f"focus pair: **{dataset} / {backbone}** under the {protocol} protocol (full − adapter = "
            f"{row['gap_points']:+.2f} [{row['gap_low']:+.2f}, {row['gap_high']:+.2f}] points, n={int(row['seeds'])} seeds)")


def pair_runs(runs: pd.DataFrame, dataset: str, backbone: str) -> pd.DataFrame:
    return runs[(runs["dataset"] == dataset) & (runs["backbone"] == backbone)].sort_values(["method", "seed"])


def pair_errors(frames: dict[str, pd.DataFrame], focus: tuple[str, str, str] | None, root=None) -> pd.DataFrame:
    """Per-class test errors of every regime and seed on the focus pair under its protocol (``frames``: protocol ->
    runs), from the stored predictions (an empty frame for ``focus=None``)."""
    if focus is None:
        return pd.DataFrame(columns=["class", "class_name", "n", "errors", "error", "most_confused_with", "regime", "seed", "run_id"])
    protocol, dataset, backbone = focus
    runs = frames[protocol]
    chosen = pair_runs(runs, dataset, backbone)
    if chosen.empty:
        raise LookupError(f"no finished runs for {dataset}/{backbone}")
    names = run_store.read_result(chosen["run_id"].iloc[0], root)["dataset"]["class_names"]
    preds = {rid: run_store.load_predictions(rid, root) for rid in chosen["run_id"]}
    return per_class_by_regime(chosen, preds, names)


def pair_examples(frames: dict[str, pd.DataFrame], focus: tuple[str, str, str] | None, per_regime: int = 4,
                  seed: int = 0, root=None) -> tuple[np.ndarray, list[str]]:
    """Test images each regime (seed ``seed``) gets wrong on the focus pair under its protocol, preferably alone,
    with 'regime: true → predicted' captions (none for ``focus=None``)."""
    if focus is None:
        return np.zeros((0, 1, 1)), []
    protocol, dataset, backbone = focus
    chosen = pair_runs(frames[protocol], dataset, backbone)
    chosen = chosen[chosen["seed"] == seed]
    info = run_store.read_result(chosen["run_id"].iloc[0], root)
    names = info["dataset"]["class_names"]
    preds = {method_label(m): run_store.load_predictions(rid, root) for m, rid in zip(chosen["method"], chosen["run_id"])}
    y_true = next(iter(preds.values()))["y_true"]
    cfg = run_store.load_config(chosen["run_id"].iloc[0], root)
    dcfg = data_config(create_backbone(backbone, 1, pretrained=False, profile=cfg.profile))
    test = load_for_run(cfg).test
    picks = wrong_examples(y_true, {r: p["y_pred"] for r, p in preds.items()}, per_regime, seed)
    labels = [int(test[i][1]) for i in picks["index"]]
    if labels != picks["y_true"].tolist():
        raise ValueError(f"stored predictions of {dataset}/{backbone} do not line up with the test split (labels differ)")
    images = display_images(test, picks["index"].tolist(), dcfg["mean"], dcfg["std"])
    titles = [f"{r}{' (only)' if o else ''}\n{names[t]} → {names[p]}" for r, t, p, o in
              zip(picks["regime"], picks["y_true"], picks["y_pred"], picks["only_this_regime_wrong"])]
    return images, titles


# -- per-class errors and examples -----------------------------------------------------------------------
def per_class_errors(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Error rate per true class (``error`` a fraction), with the most frequent wrong prediction.

    Only classes with test images have a row: a partial copy of a dataset, or a ``limit``, leaves some out, and
    a class without test images has no error rate.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rows = []
    for c, name in enumerate(class_names):
        mask = y_true == c
        if not mask.any():
            continue
        wrong = y_pred[mask & (y_pred != c)]
        top = np.bincount(wrong, minlength=len(class_names)).argmax() if len(wrong) else -1
        rows.append({"class": c, "class_name": name, "n": int(mask.sum()), "errors": int(len(wrong)),
                     "error": float(len(wrong) / mask.sum()),
                     "most_confused_with": class_names[top] if top >= 0 else ""})
    return pd.DataFrame(rows, columns=["class", "class_name", "n", "errors", "error", "most_confused_with"])


def per_class_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Per-class error (%) by regime, mean over seeds: rows classes in first-seen order, columns regimes."""
    return errors.groupby(["regime", "class_name"], sort=False)["error"].mean().unstack("regime").mul(100).round(2)


def per_class_by_regime(runs: pd.DataFrame, predictions: dict[str, dict], class_names: list[str]) -> pd.DataFrame:
    """Per-class errors of every run in ``runs`` (``predictions``: run_id -> npz dict), labelled by regime and seed."""
    parts = []
    for _, run in runs.iterrows():
        pred = predictions[run["run_id"]]
        part = per_class_errors(pred["y_true"], pred["y_pred"], class_names)
        part["regime"], part["seed"], part["run_id"] = method_label(run["method"]), run["seed"], run["run_id"]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def wrong_examples(y_true: np.ndarray, preds: dict[str, np.ndarray], per_regime: int = 4, seed: int = 0) -> pd.DataFrame:
    """For each regime, test indices it gets wrong, preferring those every other regime gets right."""
    y_true = np.asarray(y_true)
    rng = np.random.default_rng(seed)
    rows = []
    for regime, pred in preds.items():
        pred = np.asarray(pred)
        if pred.shape != y_true.shape:
            raise ValueError(f"predictions of {regime!r} have shape {pred.shape}, labels {y_true.shape}: not the same test set")
        wrong = pred != y_true
        others_right = np.logical_and.reduce([np.asarray(p) == y_true for r, p in preds.items() if r != regime]) \
            if len(preds) > 1 else np.ones_like(wrong)
        only = np.flatnonzero(wrong & others_right)
        rest = np.flatnonzero(wrong & ~others_right)
        picked = list(rng.permutation(only)[:per_regime])
        picked += list(rng.permutation(rest)[:per_regime - len(picked)])
        rows += [{"regime": regime, "index": int(i), "y_true": int(y_true[i]), "y_pred": int(pred[i]),
                  "only_this_regime_wrong": bool(others_right[i])} for i in picked]
    return pd.DataFrame(rows, columns=["regime", "index", "y_true", "y_pred", "only_this_regime_wrong"])


def display_images(dataset, indices: list[int], mean, std) -> np.ndarray:
    """Test images at ``indices`` un-normalised to [0, 1] (H×W for one channel, H×W×3 otherwise)."""
    out = []
    for i in indices:
        x = dataset[int(i)][0].detach().double()
        x = x * torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1) + torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
        x = x.clamp(0, 1).numpy()
        out.append(x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0)))
    return np.stack(out) if out else np.zeros((0, 1, 1))


__all__ = ["linear_probe_source", "linear_probes", "main_shifts",
           "backbone_width", "correlations", "display_images", "frechet_distance", "frozen_features", "gap_frame", "per_class_table", "failure_pairs", "shift_measure", "focus_pair", "describe_focus", "measure_label",
           "pair_errors", "pair_examples", "per_class_by_regime", "per_class_errors", "shift_measures", "source_dataset",
           "correlation_notes", "wrong_examples"]
