"""What the run store says a profile's grids cost to train, on which CPU: the timing the README quotes, read from
each run's recorded wall time and CPU model rather than typed (a timing without its machine means little: Intel and
AMD machines differ several-fold). Every measured time of a pass is in this one file, so every other table is
byte-identical between passes on one CPU type."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_bytes
from . import halving
from .grids import selection_cells
from .tables import tables_dir


def store_time(runs: pd.DataFrame) -> pd.DataFrame:
    """Per CPU model and thread count: finished runs, summed and median training wall time (from ``result.json``)."""
    if runs.empty:
        return pd.DataFrame(columns=["cpu", "threads", "runs", "hours (sum over runs)", "median s/run"])
    done = runs.assign(cpu=runs["cpu_model"].fillna("not recorded"), threads=runs["threads"].fillna(0).astype(int))
    table = done.groupby(["cpu", "threads"], sort=True)["wall_s"].agg(["count", "sum", "median"]).reset_index()
    table["sum"] = (table["sum"] / 3600).round(2)
    table["median"] = table["median"].round(1)
    return table.rename(columns={"count": "runs", "sum": "hours (sum over runs)", "median": "median s/run"})


def describe(table: pd.DataFrame, profile: str) -> str:
    """The Markdown the README includes: the table and what its hours mean."""
    if table.empty:
        return f"No finished `{profile}` runs in the store yet.\n"
    return (table.to_markdown(index=False) + f"\n\nTraining time of the `{profile}` grids' finished runs, summed over "
            "runs as each `result.json` recorded it, with the CPU and thread count it ran on. Shard processes run in "
            "parallel (`make mini` runs one per core), so the wall clock of a pass from nothing is about this sum "
            "divided by the shards, plus the notebooks; a cached pass trains nothing.\n")


def write(runs: pd.DataFrame, store: pd.DataFrame, profile: str) -> Path:
    """``figures/tables/<profile>/store_time.md`` (atomically): the finished ``runs``' time, and the proxy rule's
    measured cost read from the whole ``store`` (settled runs: a diverged proxy counts)."""
    wall = halving.describe_proxy_wall(halving.proxy_wall(store, profile, selection_cells(profile)))
    text = describe(store_time(runs), profile) + (f"\n{wall}" if wall else "")
    return atomic_write_bytes(tables_dir(profile) / "store_time.md", text.encode())


__all__ = ["describe", "store_time", "write"]
