"""`attnlab report RUN_DIR`: one self-contained HTML page per run (opens offline: every image is
embedded as data, no script or stylesheet is fetched)."""

from __future__ import annotations

import argparse
import base64
import html
import io
from pathlib import Path
from typing import Any

from .runs import EpochTable, atomic_write_text, read_json

__all__ = ["build_report", "report_main"]

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


def _curves(run_dir: Path) -> str:
    table = EpochTable(run_dir / "metrics.csv")
    if not table.rows:
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


def build_report(run_dir: Path, out: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    if not (run_dir / "manifest.json").exists() and not (run_dir / "config.yaml").exists():
        raise ValueError(
            f"{run_dir} is not an attnlab run folder (no manifest.json or config.yaml)"
        )
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    config = (
        (run_dir / "config.yaml").read_text(encoding="utf-8")
        if (run_dir / "config.yaml").exists()
        else ""
    )
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
    parts.append("<h2>Curves</h2>" + _curves(run_dir))
    figures = sorted((run_dir / "figures").glob("*.png")) if (run_dir / "figures").is_dir() else []
    parts.append("<h2>Figures</h2>")
    if not figures:
        parts.append("<p>No figures.</p>")
    for fig in figures:
        parts.append(
            f"<figure><img alt='{html.escape(fig.stem)}' src='{_png_data(fig.read_bytes())}'>"
            f"<figcaption>{html.escape(fig.name)}</figcaption></figure>"
        )
    parts.append(f"<h2>Config</h2><pre>{html.escape(config)}</pre></body></html>")
    out = Path(out) if out else run_dir / "report.html"
    atomic_write_text(out, "\n".join(parts))
    return out


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="attnlab report", description="HTML report of a run")
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="output file (default RUN_DIR/report.html)")
    args = parser.parse_args(argv)
    path = build_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"report: {path}")
    return 0
