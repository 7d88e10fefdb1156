"""`attnlab report RUN_DIR`: one self-contained HTML page per run (opens offline: every image is
embedded as data, no script or stylesheet is fetched). Only regular files that resolve inside the
run folder are read (``RunFiles``)."""

from __future__ import annotations

import argparse
import base64
import html
import io
import stat
import sys
from pathlib import Path
from typing import Any

from .run_lock import lock_run_folder_of
from .runs import EpochTable, atomic_write_text, read_json

__all__ = ["RunFiles", "build_report", "report_main"]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:30em}
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.8em;color:#555}
"""


def _png_data(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("metric", "value")) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table><tr><th>{header[0]}</th><th>{header[1]}</th></tr>{body}</table>"


def _curves(metrics_csv: Path | None) -> str:
    table = EpochTable(metrics_csv) if metrics_csv is not None else None
    if table is None or not table.rows:
        return "<p>No per-epoch metrics (metrics.csv is missing or empty).</p>"
    keys = [c for c in table.columns() if c not in ("epoch", "step", "time") and "/" in c]
    if not keys:
        return "<p>No curves to draw.</p>"
    from .figures import curves_figure, plt

    fig = curves_figure(table.rows, keys)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    header = "".join(f"<th>{html.escape(c)}</th>" for c in ["epoch", *keys])
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(_num(r.get(c, '')))}</td>" for c in ["epoch", *keys]) + "</tr>"
        for r in table.rows
    )
    return f'<img alt="curves" src="{_png_data(buf.getvalue())}"><table><tr>{header}</tr>{body}</table>'


def _num(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return int(f) if f.is_integer() else f


class RunFiles:
    """The files of a run folder the report may read: regular files that resolve inside it.

    A run folder can come from elsewhere (a colleague's archive, a shared disk); a symbolic
    link planted in it (``figures/x.png -> ~/.ssh/id_rsa``) must not carry the file it points to
    into a page that is then passed around. Links that stay inside the folder are followed;
    anything else is skipped and named in ``skipped``."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.root = self.run_dir.resolve()
        self.skipped: list[str] = []

    def get(self, path: Path) -> Path | None:
        """``path`` resolved, if it is a regular file inside the run folder; else None."""
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            return None
        name = path.relative_to(self.run_dir).as_posix()
        try:
            real = path.resolve(strict=True)
            regular = stat.S_ISREG(real.stat().st_mode)
        except (OSError, RuntimeError):  # a dangling link or a link loop
            self.skipped.append(f"{name} (a link to nothing readable)")
            return None
        if not real.is_relative_to(self.root):
            self.skipped.append(f"{name} (a link to outside the run folder)")
            return None
        if not regular:
            self.skipped.append(f"{name} (not a regular file)")
            return None
        return real

    def json(self, name: str) -> dict[str, Any]:
        path = self.get(self.run_dir / name)
        data = read_json(path) if path is not None else {}
        return data if isinstance(data, dict) else {}

    def text(self, name: str) -> str:
        path = self.get(self.run_dir / name)
        return path.read_text(encoding="utf-8") if path is not None else ""

    def figures(self) -> list[tuple[str, Path]]:
        """``(name in the folder, file to read)`` of each figure that may be embedded."""
        folder = self.run_dir / "figures"
        if not folder.is_dir():
            return []
        found = [(p.name, self.get(p)) for p in sorted(folder.glob("*.png"))]
        return [(name, real) for name, real in found if real is not None]


def build_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``). Written into
    a run folder, it holds the folder's lock: a live command there is a one-line refusal."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    files = RunFiles(run_dir)
    if files.get(run_dir / "manifest.json") is None and files.get(run_dir / "config.yaml") is None:
        raise ValueError(
            f"{run_dir} is not an attnlab run folder (no manifest.json or config.yaml)"
        )
    files.skipped.clear()  # named once, when each file is read below
    out = Path(out) if out else run_dir / "report.html"
    with lock_run_folder_of(out, "report"):
        atomic_write_text(out, _page(run_dir, files))
    return out


def _page(run_dir: Path, files: RunFiles) -> str:
    """The report's HTML (read after the lock is taken: a dead run's manifest then says so)."""
    manifest = files.json("manifest.json")
    metrics = files.json("metrics.json")
    config = files.text("config.yaml")
    title = f"attnlab {manifest.get('app', '')} run {run_dir.name}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    info = [
        (k, manifest.get(k))
        for k in ("command", "status", "start_time", "end_time", "seed", "device", "git_commit")
    ]
    info += [(f"version {k}", v) for k, v in (manifest.get("versions") or {}).items()]
    parts.append(
        "<h2>Run</h2>" + _table([(k, v) for k, v in info if v is not None], ("field", "value"))
    )
    rows: list[tuple[str, Any]] = []
    for section in ("best", "test", "validate"):
        for k, v in (metrics.get(section) or {}).items():
            rows.append((f"{section}: {k}", v))
    if metrics.get("best_epoch") is not None:
        rows.insert(0, ("best epoch", metrics["best_epoch"]))
    parts.append("<h2>Metrics</h2>" + (_table(rows) if rows else "<p>No metrics.json yet.</p>"))
    parts.append("<h2>Curves</h2>" + _curves(files.get(run_dir / "metrics.csv")))
    figures = files.figures()
    parts.append("<h2>Figures</h2>")
    if not figures:
        parts.append("<p>No figures.</p>")
    for name, real in figures:
        parts.append(
            f"<figure><img alt='{html.escape(Path(name).stem)}' "
            f"src='{_png_data(real.read_bytes())}'>"
            f"<figcaption>{html.escape(name)}</figcaption></figure>"
        )
    parts.append(f"<h2>Config</h2><pre>{html.escape(config)}</pre>")
    if files.skipped:
        items = "".join(f"<li>{html.escape(s)}</li>" for s in files.skipped)
        parts.append(f"<h2>Not embedded</h2><ul>{items}</ul>")
        for skipped in files.skipped:
            print(f"warning: report skipped {skipped}", file=sys.stderr)
    parts.append("</body></html>")
    return "\n".join(parts)


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="attnlab report", description="HTML report of a run")
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="output file (default RUN_DIR/report.html)")
    args = parser.parse_args(argv)
    path = build_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"report: {path}")
    return 0
