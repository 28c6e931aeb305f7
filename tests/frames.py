"""Small hand-made results frames shared by the paper-floor tests."""
import pandas as pd



def _runs(spec: dict[tuple[str, str, str], list[float]], **extra) -> pd.DataFrame:
    """(dataset, backbone, method) -> per-seed test accuracies, as a results frame."""
    rows = []
    for (dataset, backbone, method), accs in spec.items():
        for seed, acc in enumerate(accs):
            rows.append({"dataset": dataset, "backbone": backbone, "method": method, "seed": seed, "test_acc": acc,
                         "train_eval_acc": min(1.0, acc + 0.1), "run_id": f"{dataset}-{backbone}-{method}-{seed}", **extra})
    return pd.DataFrame(rows)


MAIN = _runs({
    ("a", "s", "head"): [0.50, 0.52, 0.54],
    ("a", "s", "adapter"): [0.80, 0.82, 0.84],
    ("a", "s", "full"): [0.70, 0.70, 0.70],
    ("b", "s", "head"): [0.40, 0.40, 0.40],
    ("b", "s", "adapter"): [0.60, 0.60, 0.60],
    ("b", "s", "full"): [0.90, 0.92, 0.94],
    ("a", "t", "head"): [0.30, 0.30, 0.30],
    ("a", "t", "adapter"): [0.35, 0.35, 0.35],
    ("a", "t", "full"): [0.35, 0.35, 0.35],
})
