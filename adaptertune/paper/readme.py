"""Generated blocks of the README and the docs: every result they show is a file that ``make mini`` or ``make bench``
writes, copied in verbatim between ``<!-- include: PATH -->`` and ``<!-- /include -->`` (PATH relative to the project
home, whichever document includes it).

``python -m adaptertune.paper.readme`` (run by the suite and by ``make bench``) refreshes every block whose file
exists in ``README.md`` and ``docs/*.md``; ``--check`` exits 1 naming each block that differs from its file (the
tests run the same check), so no document can show a number the run store or the benchmark did not produce.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..paths import figures_dir, home

DOCUMENTS = ("README.md", "docs/*.md")  # the documents with include blocks, relative to the project home
INCLUDE = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /include -->)", re.S)


def includes(text: str) -> dict[str, str]:
    """``{path: body}`` of every include block of a README text."""
    return {m["path"]: m["body"] for m in INCLUDE.finditer(text)}


def documents(root: Path | None = None) -> list[Path]:
    """The project's documents that may hold include blocks."""
    root = root or home()
    return [path for pattern in DOCUMENTS for path in sorted(root.glob(pattern)) if path.is_file()]


def stale(readme: Path | None = None, root: Path | None = None) -> list[str]:
    """The include paths whose block differs from the file (or whose file is missing)."""
    readme, root = readme or home() / "README.md", root or home()
    out = []
    for path, body in includes(readme.read_text()).items():
        source = root / path
        if not source.is_file() or source.read_text() != body:
            out.append(path)
    return out


def sync(readme: Path | None = None, root: Path | None = None, only: str | None = None) -> list[str]:
    """Copy each included file (those under ``only``, a path prefix, if given) into its block; returns the paths
    refreshed. Blocks whose file does not exist are left as they are."""
    readme, root = readme or home() / "README.md", root or home()
    if not readme.is_file():
        return []
    done: list[str] = []

    def refresh(m: re.Match) -> str:
        source = root / m["path"]
        if (only and not m["path"].startswith(only)) or not source.is_file():
            return m.group(0)
        done.append(m["path"])
        return m.group(1) + source.read_text() + m.group(4)

    text = INCLUDE.sub(refresh, readme.read_text())
    atomic_write_bytes(readme, text.encode())
    return done


def sync_all(root: Path | None = None, only: str | None = None) -> dict[str, list[str]]:
    """:func:`sync` for every document; ``{document: paths refreshed}`` for those where something was refreshed."""
    root = root or home()
    done = {str(doc.relative_to(root)): sync(doc, root, only) for doc in documents(root)}
    return {doc: paths for doc, paths in done.items() if paths}


def stale_all(root: Path | None = None) -> dict[str, list[str]]:
    """:func:`stale` for every document; ``{document: stale paths}`` for those with any."""
    root = root or home()
    found = {str(doc.relative_to(root)): stale(doc, root) for doc in documents(root)}
    return {doc: paths for doc, paths in found.items() if paths}


def write_summary(text: str, name: str, profile: str) -> Path:
    """A notebook's Markdown summary as ``figures/tables/<profile>/<name>.md``: a file an include block can copy."""
    return atomic_write_bytes(figures_dir() / "tables" / profile / f"{name}.md", (text.rstrip() + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptertune.paper.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report blocks that differ from their files")
    parser.add_argument("--only", help="refresh only includes under this path prefix (e.g. benchmarks/)")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale_all()
        for doc, paths in bad.items():
            for path in paths:
                print(f"{doc}: the block of {path} differs from the file (run `python -m adaptertune.paper.readme`)",
                      file=sys.stderr)
        return 1 if bad else 0
    for doc, paths in sync_all(only=args.only).items():
        for path in paths:
            print(f"{doc}: refreshed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DOCUMENTS", "INCLUDE", "documents", "includes", "main", "stale", "stale_all", "sync", "sync_all",
           "write_summary"]
