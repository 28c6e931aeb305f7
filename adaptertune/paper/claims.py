"""The claims table and the controls table: what the notebooks concluded, collected by the suite.

Each notebook records the verdicts and findings it displayed (``record``: a JSON file per notebook under
``figures/tables/<profile>/verdicts/``); after the notebooks the suite assembles them into ``claims.md`` and
``controls.md`` (``assemble``) and, for the mini profile, copies both into the README between markers
(``sync_readme``). The README's result sentences are therefore the notebooks' own, and a test fails when the README
and the files differ.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_bytes
from ..paths import home
from .controls import Finding
from .protocols import PROTOCOL_NAMES
from .tables import tables_dir
from .verdicts import PAPER, Verdict

PROTOCOL_TITLES = {"paper-recipe": "paper recipe (one lr for all)", "tuned": "tuned (lr per regime, on validation)",
                   "—": "—"}
README_PROFILE = "mini"


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
    """One row per claim of the paper (``PAPER`` order), one column per protocol: ``verdict — measured``."""
    order = {key: i for i, key in enumerate(PAPER)}
    rows: dict[str, dict] = {}
    for v in sorted(verdicts, key=lambda v: order.get(v.key, len(order))):
        row = rows.setdefault(v.key, {"claim": v.claim, "rule": v.rule})
        row[v.protocol] = f"**{v.verdict}**: {v.measured}"
    columns = [p for p in ("—",) + PROTOCOL_NAMES if any(p in r for r in rows.values())]
    frame = pd.DataFrame([{"paper's claim": r["claim"], **{PROTOCOL_TITLES[p]: r.get(p, "") for p in columns},
                           "rule": r["rule"]} for r in rows.values()])
    return frame


def claims_markdown(profile: str, verdicts: list[Verdict]) -> str:
    frame = claims_frame(verdicts)
    if frame.empty:
        return f"No verdicts recorded for profile {profile} yet.\n"
    rules = frame.pop("rule")
    frame.insert(0, "#", range(1, len(frame) + 1))
    counts = pd.Series([v.verdict for v in verdicts]).value_counts()
    head = (f"Profile `{profile}`: {len(frame)} claims of the paper, {len(verdicts)} verdicts "
            f"({', '.join(f'{n} {k}' for k, n in counts.items())}). Intervals are 95% Student-t over seeds "
            "(paired where the seeds pair), in points of test accuracy; n is stated in each cell.\n\n")
    notes = "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules, 1))
    return head + frame.to_markdown(index=False) + "\n\nRules (what decided each verdict):\n\n" + notes + "\n"


def controls_markdown(profile: str, findings: list[Finding]) -> str:
    if not findings:
        return f"No control findings recorded for profile {profile} yet.\n"
    return "\n".join(f.markdown() for f in findings) + "\n"


def assemble(profile: str) -> dict[str, Path]:
    """``claims.md`` and ``controls.md`` under ``figures/tables/<profile>/`` from the recorded verdicts."""
    verdicts, findings = collected(profile)
    out = tables_dir(profile)
    warn = "**SMOKE — plumbing only, not results.**\n\n" if profile == "smoke" else ""
    return {"claims": atomic_write_bytes(out / "claims.md", (warn + claims_markdown(profile, verdicts)).encode()),
            "controls": atomic_write_bytes(out / "controls.md", (warn + controls_markdown(profile, findings)).encode())}


def _markers(kind: str, profile: str = README_PROFILE) -> tuple[str, str]:
    return f"<!-- {kind}:{profile}:begin (written by the suite from figures/tables/{profile}/{kind}.md) -->", \
        f"<!-- {kind}:{profile}:end -->"


def readme_blocks(text: str, profile: str = README_PROFILE) -> dict[str, str]:
    """The generated blocks of a README text (what lies between each pair of markers)."""
    out = {}
    for kind in ("claims", "controls"):
        begin, end = _markers(kind, profile)
        if begin in text and end in text:
            out[kind] = text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    return out


def sync_readme(profile: str = README_PROFILE, readme: Path | None = None) -> Path | None:
    """Copy claims.md and controls.md into the README's marked blocks (a README without markers is left alone)."""
    readme = readme or home() / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text()
    for kind in ("claims", "controls"):
        begin, end = _markers(kind, profile)
        source = tables_dir(profile) / f"{kind}.md"
        if begin not in text or end not in text or not source.is_file():
            continue
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + source.read_text() + end + rest.split(end, 1)[1]
    return atomic_write_bytes(readme, text.encode())


__all__ = ["README_PROFILE", "assemble", "claims_frame", "claims_markdown", "collected", "controls_markdown",
           "readme_blocks", "record", "sync_readme", "verdicts_dir"]
