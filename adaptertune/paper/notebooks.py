"""The numbered notebooks: finding them, checking their parameters, executing them with papermill and rendering
the executed copies to the HTML appendix."""
from __future__ import annotations

import ast
import html
import json
import multiprocessing
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import papermill
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from ..atomic import atomic_write_bytes
from ..paths import checkout_root, figures_dir, home, notebooks_dir
from ..profiles import profile_record

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
CELL_TIMEOUT_S = 1800  # a cell that runs longer is a hang, reported as a failure of that cell (notebooks never train)
_TIMES = ("start_time", "end_time", "duration")
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def notebook_source() -> Path:
    """``notebooks/`` of the project home, or of this checkout when the home (e.g. a test's tmp dir) has none."""
    here = notebooks_dir()
    if any(here.glob(NOTEBOOK_GLOB)) or checkout_root() is None:
        return here
    return checkout_root() / "notebooks"


def notebooks(only: list[str] | None = None, source: Path | None = None) -> list[Path]:
    """The numbered notebooks, in order; ``only`` keeps those whose name starts with one of the prefixes."""
    source = source or notebook_source()
    found = sorted(source.glob(NOTEBOOK_GLOB))
    if not found:
        raise FileNotFoundError(f"no notebooks matching {NOTEBOOK_GLOB} in {source}")
    if only:
        unknown = [o for o in only if not any(nb.name.startswith(o) for nb in found)]
        if unknown:
            raise ValueError(f"--only {unknown} matches no notebook: choose from {[nb.stem for nb in found]}")
        found = [nb for nb in found if any(nb.name.startswith(o) for o in only)]
    return found


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters cell of a notebook, as papermill reads it (name -> inferred type, default, help)."""
    return papermill.inspect_notebook(str(notebook))


def check_parameters(notebook_paths: list[Path], given: dict) -> None:
    """Every given parameter must be declared by every notebook it is passed to; else name it and the allowed ones."""
    for nb in notebook_paths:
        declared = declared_parameters(nb)
        if not declared:
            raise ValueError(f"notebook {nb.name} has no cell tagged 'parameters'")
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ValueError(f"parameter(s) {unknown} are not declared by notebook {nb.name}: its parameters are "
                             f"{sorted(declared)}")


def parse_param(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE a Python literal (``8``, ``0.5``, ``'x'``, ``True``); bare words are strings."""
    if "=" not in text:
        raise ValueError(f"--param {text!r} is not allowed: use KEY=VALUE, e.g. --param theory_images=256")
    key, value = text.split("=", 1)
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


# Set for the kernels the suite starts (they inherit the environment): a headless run has no frontend to talk to
# widgets, and nbclient can wait forever on an Output widget's messages (jupyter/nbclient#312), so widgets stand down.
HEADLESS_ENV = "ADAPTERTUNE_HEADLESS"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def execute(notebook: Path, output: Path, parameters: dict, log_output: bool = False) -> float:
    """Run one notebook with papermill (kernel cwd = the project home); returns seconds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    previous = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                                   cwd=str(home()), progress_bar=False, log_output=log_output,
                                   start_timeout=120, execution_timeout=CELL_TIMEOUT_S)
        make_reproducible(output)
    except PapermillExecutionError as err:
        raise NotebookFailed(f"notebook {notebook.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
                             f"{err.ename}: {err.evalue}\n  the executed notebook with the traceback is kept at {output}") from err
    except TimeoutError as err:
        raise NotebookFailed(f"notebook {notebook.name}: a cell ran longer than {CELL_TIMEOUT_S} s or the kernel did not "
                             f"start ({err}); the partly executed notebook is at {output}") from err
    finally:
        if previous is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = previous
    return time.perf_counter() - t0


NOTEBOOK_WORKERS_ENV = "ADAPTERTUNE_NOTEBOOK_WORKERS"


def notebook_workers() -> int:
    """How many notebooks run at once: ``$ADAPTERTUNE_NOTEBOOK_WORKERS``, else one. Side by side changes no byte of
    what they write (they only read the store; their outputs carry no timings), but each notebook computes with every
    core: on a 2-core machine two kernels at once took longer than one after another (measured on a cached mini pass),
    so more than one pays only where cores outnumber what one kernel uses."""
    value = os.environ.get(NOTEBOOK_WORKERS_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{NOTEBOOK_WORKERS_ENV}={value!r} is not allowed: use a positive integer")
    return int(value)


def execute_all(notebook_paths: list[Path], out_dir: Path, parameters: dict, log_output: bool = False,
                workers: int | None = None, on_done: Callable[[int, Path, float], None] | None = None) -> list[float]:
    """Execute every notebook into ``out_dir`` (``workers`` kernels at once, in separate processes so papermill's
    event loops never share a thread); seconds per notebook in the given order. The first failure is raised as
    :class:`NotebookFailed` once the notebooks already started have finished."""
    workers = notebook_workers() if workers is None else workers
    if workers <= 1 or len(notebook_paths) <= 1:
        secs = []
        for k, nb in enumerate(notebook_paths):
            secs.append(execute(nb, out_dir / nb.name, parameters, log_output))
            if on_done:
                on_done(k, nb, secs[-1])
        return secs
    out: dict[int, float] = {}
    failure: NotebookFailed | None = None
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(execute, nb, out_dir / nb.name, parameters, log_output): k
                   for k, nb in enumerate(notebook_paths)}
        for future in as_completed(futures):
            k = futures[future]
            try:
                out[k] = future.result()
            except NotebookFailed as err:
                failure = failure or err
                for f in futures:
                    f.cancel()
                continue
            if on_done:
                on_done(k, notebook_paths[k], out[k])
    if failure is not None:
        raise failure
    return [out[k] for k in range(len(notebook_paths))]


def make_reproducible(executed: Path) -> None:
    """Drop what changes between two executions on the same run store — timestamps and durations, papermill's random
    id for its injected cell, absolute paths, ipywidgets' random model ids and state — so the executed notebooks in
    git are byte for byte what ``make mini`` regenerates anywhere. Widgets need a live kernel anyway; their text
    form stays."""
    book = json.loads(executed.read_text())
    meta = book["metadata"]
    meta.pop("widgets", None)
    run = meta.get("papermill", {})
    for key in _TIMES:
        run.pop(key, None)
    for key in ("input_path", "output_path"):
        if run.get(key):
            path = Path(run[key])
            run[key] = str(path.relative_to(home())) if path.is_relative_to(home()) else path.name
    for cell in book["cells"]:
        cell["metadata"].pop("execution", None)
        for key in _TIMES:
            cell["metadata"].get("papermill", {}).pop(key, None)
        if "injected-parameters" in cell["metadata"].get("tags", []):
            cell["id"] = "injected-parameters"
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(_WIDGET_VIEW, None)
    atomic_write_bytes(executed, (json.dumps(book, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode())


def render_html(executed: Path, out_dir: Path) -> Path:
    """nbconvert HTML with every figure embedded (inline PNG outputs), input cells kept."""
    body, _ = HTMLExporter().from_filename(str(executed))
    return atomic_write_bytes(out_dir / f"{executed.stem}.html", body.encode())


def notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook (its claim)."""
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return path.stem


def write_index(profile: str, pages: list[tuple[Path, str, float]], out_dir: Path) -> Path:
    """``index.html`` linking every rendered notebook, with its title and execution time."""
    items = "\n".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a> — {html.escape(title)} '
                      f"<small>({secs:.0f} s)</small></li>" for p, title, secs in pages)
    stamp = profile_record(profile).stamp
    warn = f'<p style="color:red;font-weight:bold">{stamp}.</p>' if stamp else ""
    text = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>adaptertune appendix ({profile})</title></head>"
            f"<body><h1>adaptertune — notebook appendix, profile <code>{profile}</code></h1>{warn}\n<ol>\n{items}\n</ol>\n"
            f"<p>Tables: <code>figures/tables/{profile}/</code>; figures: <code>figures/{profile}/</code>; executed notebooks: "
            f"<code>notebooks/executed/{profile}/</code>.</p></body></html>\n")
    return atomic_write_bytes(out_dir / "index.html", text.encode())


def compare_with_committed(profile: str) -> str:
    """Which of the profile's tables differ from the committed ones (``git diff``), so a fresh clone shows at once
    whether it reproduced the appendix; a project home outside a git checkout says so."""
    where = home()
    tables = f"figures/tables/{profile}"
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--", tables], cwd=where, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        return f"[suite] could not compare with the committed tables: {err}"
    if done.returncode != 0:
        return f"[suite] {where} is not a git checkout: nothing to compare the tables with"
    changed = [line[3:] for line in done.stdout.splitlines() if line.strip()]
    if not changed:
        return f"[suite] every table under {tables}/ is byte-identical to the committed one"
    return (f"[suite] {len(changed)} table file(s) differ from the committed ones (`git diff -- {tables}` shows how): "
            + ", ".join(Path(c).name for c in changed[:12]) + (" ..." if len(changed) > 12 else ""))


def executed_dir(profile: str) -> Path:
    return notebooks_dir() / "executed" / profile


def appendix_dir(profile: str) -> Path:
    return figures_dir() / "appendix" / profile


__all__ = ["NOTEBOOK_GLOB", "NotebookFailed", "appendix_dir", "check_parameters", "declared_parameters", "execute",
           "compare_with_committed", "executed_dir", "make_reproducible", "notebook_source", "notebook_title", "notebooks",
           "parse_param", "render_html",
           "write_index"]
