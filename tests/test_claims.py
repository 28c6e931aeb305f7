"""The claims table: notebooks record verdicts, the suite assembles claims.md/controls.md and copies them into the
README between markers; the README must show exactly the committed tables."""
from __future__ import annotations

from pathlib import Path

from adaptertune.paper import claims
from adaptertune.paper.controls import Finding
from adaptertune.paper.verdicts import PAPER, Verdict

ROOT = Path(__file__).resolve().parent.parent


def v(key: str, protocol: str, verdict: str = "agrees") -> Verdict:
    return Verdict(key, PAPER[key], f"measured {key} {protocol}", verdict, f"rule of {key}", protocol)


def test_record_collect_assemble(isolated_home):
    claims.record("mini", "03", [v("beats_full", "tuned", "disagrees"), None, v("beats_full", "paper-recipe")])
    claims.record("mini", "01", [v("params", "—")], [Finding("scratch", "Q?", "A.", "how")])
    verdicts, findings = claims.collected("mini")
    assert [x.key for x in verdicts] == ["params", "beats_full", "beats_full"] and findings[0].key == "scratch"
    frame = claims.claims_frame(verdicts)
    assert list(frame["paper's claim"]) == [PAPER["params"], PAPER["beats_full"]]
    assert frame.loc[1, claims.PROTOCOL_TITLES["tuned"]] == "**disagrees**: measured beats_full tuned"
    paths = claims.assemble("mini")
    text = paths["claims"].read_text()
    assert "3 verdicts (2 agrees, 1 disagrees)" in text and "1. rule of params" in text
    assert paths["controls"].read_text() == "- **Q?** A. (how).\n"


def test_sync_readme_replaces_only_the_marked_blocks(isolated_home, tmp_path):
    claims.record("mini", "03", [v("beats_head", "tuned")])
    claims.assemble("mini")
    begin, end = claims._markers("claims")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{begin}\nold table\n{end}\noutro\n")
    claims.sync_readme("mini", readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert claims.readme_blocks(text)["claims"] == (claims.tables_dir("mini") / "claims.md").read_text()


def test_the_readme_shows_exactly_the_committed_claims_and_controls():
    blocks = claims.readme_blocks((ROOT / "README.md").read_text())
    assert set(blocks) == {"claims", "controls"}, "README.md lacks the generated claims/controls blocks"
    for kind, text in blocks.items():
        committed = (ROOT / "figures" / "tables" / claims.README_PROFILE / f"{kind}.md").read_text()
        assert text == committed, f"README.md's {kind} block differs from figures/tables/mini/{kind}.md: run make mini"
