"""The help cache (``attnlab.help_cache``, issue 23): `attnlab <app> fit --help` a second time
prints the stored text without importing torch; the key changes with whatever the text could
depend on; a folder that cannot be written, or an error, never breaks or poisons ``--help``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from attnlab import App
from attnlab.cli import main
from attnlab.help_cache import help_key, print_help_cached

# Runs the command in-process and says on stderr (stdout is the help) whether torch or
# Lightning were imported.
PROBE = """
import sys
from attnlab.cli import main
try:
    main(sys.argv[1:])
finally:
    heavy = sorted(m for m in ("torch", "lightning") if m in sys.modules)
    print("imported:", heavy, file=sys.stderr)
"""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache on (tests/conftest.py turns it off), in this test's folder."""
    folder = tmp_path / "help-cache"
    monkeypatch.delenv("ATTNLAB_NO_HELP_CACHE", raising=False)
    monkeypatch.setenv("ATTNLAB_HELP_CACHE", str(folder))
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["attnlab"])  # the command sets sys.argv for LightningCLI
    return folder


def _probe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ATTNLAB_DEBUG"}
    env.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_second_help_is_the_stored_text_without_importing_torch(
    cache_dir: Path, tmp_path: Path
) -> None:
    first = _probe(tmp_path, "forecast", "fit", "--help")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "imported: ['lightning', 'torch']" in first.stderr  # rendered by LightningCLI
    assert "--data.dataset DATASET" in first.stdout
    assert len(list(cache_dir.glob("*.txt"))) == 1
    second = _probe(tmp_path, "forecast", "fit", "--help")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout == first.stdout
    assert "imported: []" in second.stderr, second.stderr[-3000:]


def _package_app(root: Path) -> App:
    """An app whose classes live in a package ``helpkey_app`` under ``root`` (not imported)."""
    package = root / "helpkey_app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "module.py").write_text("class Module:\n    pass\n")
    return App(
        name="helpkey",
        module="helpkey_app.module:Module",  # type: ignore[arg-type]
        datamodule="helpkey_app.module:Module",  # type: ignore[arg-type]
        config_dir=root / "configs",
    )


def test_key_changes_with_config_content_sources_width_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    app = _package_app(tmp_path / "site")
    config = tmp_path / "my.yaml"
    config.write_text("trainer:\n  max_epochs: 3\n")
    args = ["helpkey", "fit", "--config", str(config), "--help"]
    monkeypatch.setenv("COLUMNS", "100")
    base = help_key(app, args, args[1:])
    assert help_key(app, args, args[1:]) == base
    assert "helpkey_app" not in sys.modules  # located, not imported

    config.write_text("trainer:\n  max_epochs: 4\n")  # same size, other content
    assert help_key(app, args, args[1:]) != base
    config.write_text("trainer:\n  max_epochs: 3\n")
    assert help_key(app, args, args[1:]) == base

    source = tmp_path / "site" / "helpkey_app" / "module.py"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    assert help_key(app, args, args[1:]) != base
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert help_key(app, args, args[1:]) == base
    (source.parent / "extra.py").write_text("")  # a new file in the package
    assert help_key(app, args, args[1:]) != base
    (source.parent / "extra.py").unlink()
    assert help_key(app, args, args[1:]) == base

    assert help_key(app, [*args, "--verbose"], args[1:]) != base
    monkeypatch.setenv("COLUMNS", "120")  # argparse wraps to the terminal's width
    assert help_key(app, args, args[1:]) != base
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("ATTNLAB_SHARED", str(tmp_path))  # where config names are looked up
    assert help_key(app, args, args[1:]) != base
    monkeypatch.delenv("ATTNLAB_SHARED")
    monkeypatch.setenv("ATTNLAB_HELP_CACHE", str(tmp_path / "elsewhere"))  # not the help's
    assert help_key(app, args, args[1:]) == base


def test_only_a_successful_help_is_stored(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _package_app(tmp_path / "site")
    args, resolved = ["helpkey", "fit", "--help"], ["fit", "--help"]

    def fails(exc: BaseException) -> Callable[[], None]:
        """A render that prints part of a text, then ends with ``exc``."""

        def render() -> None:
            print("usage: partial")
            raise exc

        return render

    def silent() -> None:  # a help that exits 0 having printed nothing
        raise SystemExit(0)

    for render in (fails(SystemExit(2)), fails(ValueError("bad value")), silent):
        with pytest.raises((SystemExit, ValueError)):
            print_help_cached(app, args, resolved, render)
    assert not cache_dir.exists() or not list(cache_dir.iterdir())

    with pytest.raises(SystemExit) as done:
        print_help_cached(app, args, resolved, fails(SystemExit(0)))
    assert done.value.code == 0
    assert len(list(cache_dir.glob("*.txt"))) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:  # from the cache: this render would fail the test
        print_help_cached(app, args, resolved, fails(AssertionError("rendered again")))
    assert done.value.code == 0
    assert capsys.readouterr().out == "usage: partial\n"


def test_errors_are_not_stored_and_an_unwritable_folder_still_prints_help(
    cache_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["forecast", "fit", "--trainer.max_epochs=abc", "--help"]) == 1
    assert capsys.readouterr().err.startswith("error: --trainer.max_epochs abc")
    assert not cache_dir.exists() or not list(cache_dir.iterdir())

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("ATTNLAB_HELP_CACHE", str(blocked))  # a file: no folder can be made
    with pytest.raises(SystemExit) as done:
        main(["forecast", "fit", "--help"])
    assert done.value.code == 0
    assert "--data.dataset DATASET" in capsys.readouterr().out
    assert blocked.is_file() and blocked.read_text() == ""
