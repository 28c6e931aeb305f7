"""The claims table and the controls table: what the notebooks concluded, collected by the suite.

Each notebook records the verdicts and findings it displayed (``record``: a JSON file per notebook under
``figures/tables/<profile>/verdicts/``); after the notebooks the suite assembles them into ``claims.md`` and
``controls.md`` (``assemble``), which the README includes verbatim (``readme``). The README's result sentences are
therefore the notebooks' own, and a test fails when the README and the files differ.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_bytes
from ..paths import home
from ..profiles import profile_record
from .controls import Finding
from .protocols import PROTOCOL_NAMES
from .protocols import protocol as protocol_of
from .tables import tables_dir
from .verdicts import EQUIVALENCE_POINTS, PAPER, Verdict, not_tested

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


def with_untested(verdicts: list[Verdict]) -> list[Verdict]:
    """Every claim of ``PAPER``: one no notebook judged is ``not tested`` (it had no runs), never silently absent."""
    judged = {v.key for v in verdicts}
    return list(verdicts) + [not_tested(key, "no notebook recorded a verdict (no runs)", "paper-recipe")
                             for key in PAPER if key not in judged]


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
    if not verdicts:
        return f"No verdicts recorded for profile {profile} yet.\n"
    verdicts = with_untested(verdicts)
    frame = claims_frame(verdicts)
    frame.insert(0, "#", range(1, len(frame) + 1))
    counts = pd.Series([v.verdict for v in verdicts]).value_counts()
    head = (f"Profile `{profile}`: {len(frame)} claims of the paper, {len(verdicts)} verdicts "
            f"({', '.join(f'{n} {k}' for k, n in counts.items())}). Intervals are 95% Student-t, paired by seed "
            "(in the main comparison seed s trains on pretraining replicate s, so n counts backbones where the store "
            "has replicates), in points of test accuracy; n is stated with each. \"Near\", \"nearly equal\" and "
            f"the elbow need a 90% interval inside ±{EQUIVALENCE_POINTS:g} point; *not tested*: no runs test the "
            f"claim. The ablations run under one protocol ({PROTOCOL_TITLES[protocol_of(profile).ablation_protocol]}: "
            "the adapter's tuned rate where the profile tunes it) on each size's first pretraining run, so their n "
            "counts training seeds of one backbone; the other column shows —.\n\n")
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


def verdict_cells(claims_md: str) -> dict[tuple[str, str], str]:
    """``(claim, protocol column) -> verdict`` from a ``claims.md`` text (its first table), to compare two versions."""
    rows = [line for line in claims_md.splitlines() if line.startswith("|")]
    if len(rows) < 3:
        return {}
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    cells = {}
    for line in rows[2:]:
        values = [c.strip() for c in line.strip("|").split("|")]
        claim = values[header.index("paper's claim")]
        for column, value in zip(header, values):
            if column in PROTOCOL_TITLES.values() and value != "—":
                cells[(claim, column)] = value.split("**")[1] if value.count("**") >= 2 else value
    return cells


def stability(old_md: str, new_md: str) -> tuple[str, int]:
    """Markdown naming every verdict that differs between two claims tables, and how many do (a claim only one table
    has counts as a change)."""
    old, new = verdict_cells(old_md), verdict_cells(new_md)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    lines = [f"- *{claim}* ({column}): {old.get((claim, column), 'absent')} → {new.get((claim, column), 'absent')}"
             for claim, column in changed]
    head = (f"{len(changed)} verdict cell(s) differ from the committed claims table ({len(new)} verdict cells now, "
            f"{len(old)} committed: a claim decided under both protocols fills two cells; a cell only one table has "
            "counts as a change)")
    return head + (":\n\n" + "\n".join(lines) if lines else ".") + "\n", len(changed)


def committed_claims(profile: str) -> str | None:
    """The claims table of git HEAD (None outside a git checkout or before the first committed table)."""
    try:
        path = (tables_dir(profile) / "claims.md").relative_to(home())
    except ValueError:  # the tables live outside the checkout: git has no committed copy of them
        return None
    try:
        done = subprocess.run(["git", "show", f"HEAD:{path.as_posix()}"], cwd=home(), capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def assemble(profile: str) -> dict[str, Path]:
    """``claims.md`` and ``controls.md`` under ``figures/tables/<profile>/`` from the recorded verdicts, and
    ``verdict_stability.md``: how many verdicts differ from the claims table committed at git HEAD."""
    verdicts, findings = collected(profile)
    out = tables_dir(profile)
    stamp = profile_record(profile).stamp
    warn = f"**{stamp}.**\n\n" if stamp else ""
    claims_text = warn + claims_markdown(profile, verdicts)
    old = committed_claims(profile)
    report = stability(old, claims_text)[0] if old is not None else "No committed claims table to compare with.\n"
    return {"claims": atomic_write_bytes(out / "claims.md", claims_text.encode()),
            "controls": atomic_write_bytes(out / "controls.md", (warn + controls_markdown(profile, findings)).encode()),
            "stability": atomic_write_bytes(out / "verdict_stability.md", report.encode())}


__all__ = ["assemble", "claims_frame", "claims_markdown", "collected", "committed_claims", "controls_markdown",
           "record",
           "stability", "verdict_cells", "verdicts_dir", "with_untested"]
