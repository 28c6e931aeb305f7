"""The claims table and the controls table: what the notebooks concluded, collected by the suite.

Each notebook records the verdicts and findings it displayed (``record``: a JSON file per notebook under
``figures/tables/<profile>/verdicts/``); after the notebooks the suite assembles them into ``claims.md`` and
``controls.md`` (``assemble``), which the README includes verbatim (``readme``). The README's result sentences are
therefore the notebooks' own, and a test fails when the README and the files differ.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_bytes
from ..profiles import profile_record
from .controls import Finding
from .protocols import PROTOCOL_NAMES
from .tables import tables_dir
from .verdicts import PAPER, Verdict

PROTOCOL_TITLES = {"paper-recipe": "paper recipe (one lr for all)", "tuned": "tuned (lr per regime, on validation)"}


def verdicts_dir(profile: str) -> Path:
    return tables_dir(profile) / "verdicts"


def record(profile: str, notebook: str, verdicts: list[Verdict | None] = (), findings: list[Finding | None] = ()) -> Path:
    """Write what a notebook concluded (``None`` entries — nothing to judge yet — are skipped)."""
    data = {"notebook": notebook, "verdicts": [v.row() for v in verdicts if v is not None],
            "findings": [f.row() for f in findings if f is not None]}
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_bytes(verdicts_dir(profile) / f"{notebook}.json", text.encode())


def collected(profile: str) -> tuple[list[Verdict], list[Finding]]:
    """Every recorded verdict and finding of the profile, in notebook order."""
    verdicts, findings = [], []
    for path in sorted(verdicts_dir(profile).glob("*.json")):
        data = json.loads(path.read_text())
        verdicts += [Verdict(**v) for v in data["verdicts"]]
        findings += [Finding(**f) for f in data["findings"]]
    return verdicts, findings


def claims_frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per claim of the paper (``PAPER`` order), one column per protocol holding its verdict (a claim judged
    without a protocol, e.g. an exact parameter count, holds the same verdict under both)."""
    order = {key: i for i, key in enumerate(PAPER)}
    rows: dict[str, dict] = {}
    for v in sorted(verdicts, key=lambda v: order.get(v.key, len(order))):
        row = rows.setdefault(v.key, {"paper's claim": v.claim})
        for protocol in (PROTOCOL_NAMES if v.protocol == "—" else (v.protocol,)):
            row[PROTOCOL_TITLES[protocol]] = f"**{v.verdict}**" + (" (no protocol)" if v.protocol == "—" else "")
    frame = pd.DataFrame(list(rows.values()), columns=["paper's claim"] + [PROTOCOL_TITLES[p] for p in PROTOCOL_NAMES])
    return frame.fillna("—")


def claims_markdown(profile: str, verdicts: list[Verdict]) -> str:
    """The verdict table, then per claim what was measured under each protocol and the rule that decided."""
    frame = claims_frame(verdicts)
    if frame.empty:
        return f"No verdicts recorded for profile {profile} yet.\n"
    frame.insert(0, "#", range(1, len(frame) + 1))
    counts = pd.Series([v.verdict for v in verdicts]).value_counts()
    head = (f"Profile `{profile}`: {len(frame)} claims of the paper, {len(verdicts)} verdicts "
            f"({', '.join(f'{n} {k}' for k, n in counts.items())}). Intervals are 95% Student-t over seeds "
            "(paired where the seeds pair), in points of test accuracy; n is stated with each. The ablations are "
            "run under the paper recipe only (—).\n\n")
    number = {claim: i for i, claim in enumerate(frame["paper's claim"], 1)}
    evidence = []
    for claim, group in pd.DataFrame([v.row() for v in verdicts]).groupby("claim", sort=False):
        lines = [f"{number[claim]}. *{claim}*"]
        lines += [f"   - {PROTOCOL_TITLES[r.protocol] if r.protocol != '—' else 'no protocol'}: **{r.verdict}** — "
                  f"{r.measured}." for r in group.itertuples()]
        lines.append(f"   - rule: {group['rule'].iloc[0]}.")
        evidence.append((number[claim], "\n".join(lines)))
    body = "\n".join(text for _, text in sorted(evidence))
    return head + frame.to_markdown(index=False) + "\n\nWhat was measured, and the rule that decided:\n\n" + body + "\n"


def controls_markdown(profile: str, findings: list[Finding]) -> str:
    if not findings:
        return f"No control findings recorded for profile {profile} yet.\n"
    return "\n".join(f.markdown() for f in findings) + "\n"


def assemble(profile: str) -> dict[str, Path]:
    """``claims.md`` and ``controls.md`` under ``figures/tables/<profile>/`` from the recorded verdicts."""
    verdicts, findings = collected(profile)
    out = tables_dir(profile)
    stamp = profile_record(profile).stamp
    warn = f"**{stamp}.**\n\n" if stamp else ""
    return {"claims": atomic_write_bytes(out / "claims.md", (warn + claims_markdown(profile, verdicts)).encode()),
            "controls": atomic_write_bytes(out / "controls.md", (warn + controls_markdown(profile, findings)).encode())}


__all__ = ["assemble", "claims_frame", "claims_markdown", "collected", "controls_markdown", "record", "verdicts_dir"]
