"""The claims table: notebooks record verdicts, the suite assembles claims.md/controls.md and copies them into the
README between markers; the README must show exactly the committed tables."""
from __future__ import annotations

from pathlib import Path

from adaptertune.paper import claims
from adaptertune.paper import readme as readme_module
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
    assert frame.loc[1, claims.PROTOCOL_TITLES["tuned"]] == "**disagrees**"
    assert frame.loc[0, claims.PROTOCOL_TITLES["tuned"]] == "**agrees** (no protocol)"
    paths = claims.assemble("mini")
    text = paths["claims"].read_text()
    # the 15 claims no notebook judged are listed and counted as not tested
    assert "18 verdicts (15 not tested, 2 agrees, 1 disagrees)" in text and "   - rule: rule of params." in text
    assert paths["stability"].read_text().startswith("No committed claims table") or "differ from the committed claims table" in \
        paths["stability"].read_text()
    assert "   - tuned (lr per regime, on validation): **disagrees** — measured beats_full tuned." in text
    assert paths["controls"].read_text() == "- **Q?** A. (how).\n"


def test_readme_includes_are_refreshed_from_their_files(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "t.md").write_text("| a |\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- include: figures/t.md -->\nold\n<!-- /include -->\noutro <!-- include: gone.md -->\nx\n"
                      "<!-- /include -->\n")
    assert readme_module.stale(readme, tmp_path) == ["figures/t.md", "gone.md"]
    assert readme_module.sync(readme, tmp_path) == ["figures/t.md"]
    text = readme.read_text()
    assert text.startswith("intro\n") and "| a |\n| 1 |\n<!-- /include -->" in text and "old" not in text
    assert readme_module.stale(readme, tmp_path) == ["gone.md"]  # a missing file is reported, its block kept


def test_docs_include_blocks_resolve_from_the_project_home(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "t.md").write_text("measured\n")
    (tmp_path / "README.md").write_text("no blocks\n")
    doc = tmp_path / "docs" / "perf.md"
    doc.write_text("<!-- include: benchmarks/t.md -->\n<!-- /include -->\n")
    assert readme_module.documents(tmp_path) == [tmp_path / "README.md", doc]
    assert readme_module.stale_all(tmp_path) == {"docs/perf.md": ["benchmarks/t.md"]}
    assert readme_module.sync_all(tmp_path, only="figures/") == {}  # outside the prefix: untouched
    assert readme_module.sync_all(tmp_path) == {"docs/perf.md": ["benchmarks/t.md"]}
    assert doc.read_text() == "<!-- include: benchmarks/t.md -->\nmeasured\n<!-- /include -->\n"
    assert readme_module.stale_all(tmp_path) == {}


def test_the_readme_and_docs_show_exactly_the_files_they_include():
    blocks = readme_module.includes((ROOT / "README.md").read_text())
    assert "figures/tables/mini/claims.md" in blocks and "figures/tables/mini/controls.md" in blocks
    assert readme_module.stale_all(ROOT) == {}, "run `python -m adaptertune.paper.readme` (or make mini / make bench)"


def test_stability_counts_the_verdicts_that_changed():
    from adaptertune.paper import claims as cl
    from adaptertune.paper.verdicts import Verdict

    def table(first: str, second: str) -> str:
        vs = [Verdict("beats_head", "c1", "m", first, "r", "paper-recipe"),
              Verdict("beats_head", "c1", "m", "agrees", "r", "tuned"),
              Verdict("rank_r32", "c2", "m", second, "r", "paper-recipe")]
        return cl.claims_markdown("mini", vs)

    same, n_same = cl.stability(table("agrees", "agrees"), table("agrees", "agrees"))
    assert n_same == 0 and same.startswith("0 verdict cell(s) differ")
    text, n = cl.stability(table("agrees", "agrees"), table("agrees", "inconclusive"))
    assert n == 1 and "*c2* (paper recipe (one lr for all)): agrees → inconclusive" in text
    # claims nobody judged are listed as not tested, and counted
    assert "not tested" in table("agrees", "agrees")
    cells = cl.verdict_cells(table("agrees", "agrees"))
    assert cells[("c1", "tuned (lr per regime, on validation)")] == "agrees"
