"""Sessions: tests (what CI runs), lint, typecheck, bench, demo.

Every session installs the same pinned stack (constraints.txt) and forwards ``session.posargs``.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
PACKAGES = ["packages/attention-core", "packages/attnlab"]
TEST_DEPS = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "hypothesis>=6.100",
    "timm",
    "onnx",
    "onnxscript",
    "onnxruntime",
]


def _apps() -> list[str]:
    return sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("apps/*/pyproject.toml"))


def _install_project(session: nox.Session, *extra: str) -> None:
    editable: list[str] = []
    for unit in PACKAGES + _apps():
        if (ROOT / unit / "pyproject.toml").exists():
            editable += ["-e", unit]
    session.install(*CONSTRAINTS, *editable, *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """The full test suite (CI): every package, every app; `data` tests run when
    ATTNLAB_DATA_DIR points at the datasets."""
    _install_project(session, *TEST_DEPS)
    args = session.posargs or ["-n", "2", "--dist", "loadgroup", "--durations=30"]
    session.run("pytest", *args)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install_project(session, "mypy>=1.10")
    session.run("mypy", *(session.posargs or ["packages/"]))


@nox.session
def bench(session: nox.Session) -> None:
    """`nox -s bench -- forecast --jobs 2`: run the named benchmarks (results/<name>.json/.md).

    Options after the names go to `python -m benchmarks` (`--jobs N`, `--threads T`,
    `--scale full|tiny`, `--only TEXT`, `--reuse`, `--runs-dir DIR`; `-- --help` lists them).
    With no names: core, every app's benchmark, matrix, then the README's results section is
    rewritten from the result files (`nox -s bench -- readme` does only that). Real datasets
    come from ATTNLAB_DATA_DIR; each benchmark is a list of `attnlab` commands in
    benchmarks/<name>.py.
    """
    # matplotlib (matrix.png) comes with attnlab; pycocoevalcap brings METEOR's jar (java needed)
    _install_project(session, "timm", "pycocoevalcap")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main job: every registered app's quick.yaml, then one table of results."""
    _install_project(session)
    session.run("attnlab", "demo", *session.posargs)
