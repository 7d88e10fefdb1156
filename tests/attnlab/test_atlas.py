"""`attnlab atlas` on the toy app: the page's structure and data, the command's errors, and the
page in a real headless browser (no console messages, every figure drawn, selectors redraw)."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch

from attnlab.atlas import (
    OverlayPanel,
    SeriesPanel,
    TokensPanel,
    View,
    atlas_data,
    grid_cells,
    layer_head_views,
    panel_json,
    render_page,
)
from attnlab.cli import main


class PageParser(HTMLParser):
    """Collects the sections of the page and checks that every opened tag is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.void = {"meta", "br", "img", "input", "link", "hr"}
        self.stack: list[str] = []
        self.sections: list[dict[str, str | None]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.sections.append(dict(attrs))
        if tag == "script":
            self.scripts += 1
        if tag not in self.void:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


@pytest.fixture(scope="session")
def toy_atlas(
    toy_env: dict[str, str], trained_run: Path, tmp_path_factory: Any, attnlab_command: Any
) -> Path:
    """The atlas of the shared toy run given twice, written by the real command."""
    cwd = tmp_path_factory.mktemp("atlas")
    run = attnlab_command(cwd, env={"PYTHONPATH": toy_env["PYTHONPATH"]})
    proc = run("atlas", str(trained_run), str(trained_run), "--samples", "2", "--out", "atlas.html")
    assert "atlas: atlas.html (2 run(s)" in proc.stdout
    return cwd / "atlas.html"


def test_page_has_one_section_per_run_and_consistent_data(toy_atlas: Path) -> None:
    text = toy_atlas.read_text(encoding="utf-8")
    page = parse_page(text)
    assert [s["data-app"] for s in page.sections] == ["toy", "toy"]
    assert [s["id"] for s in page.sections] == ["run0", "run1"]
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    data = atlas_data(text)
    assert len(data["runs"]) == 2
    for run in data["runs"]:
        assert run["app"] == "toy" and run["checkpoint"] == "best.ckpt"
        assert run["headline"].startswith("test/acc = ")
        assert len(run["panels"]) == 2  # --samples 2
        for panel in run["panels"]:
            assert panel["kind"] == "tokens" and panel["tokens"] == [f"t{i}" for i in range(8)]
            views = {tuple(v["key"]): v["w"] for v in panel["views"]}
            # depth 1, 2 heads: rollout, the layer's head mean, each head
            assert list(views) == [
                ("rollout", "mean"),
                ("layer 1", "mean"),
                ("layer 1", "head 0"),
                ("layer 1", "head 1"),
            ]
            for key, weights in views.items():
                assert len(weights) == 8
                # the mean over queries of row-stochastic attention sums to one over the keys
                assert sum(weights) == pytest.approx(1.0, abs=2e-3), key
            mean = [
                (a + b) / 2 for a, b in zip(views["layer 1", "head 0"], views["layer 1", "head 1"])
            ]
            assert views["layer 1", "mean"] == pytest.approx(mean, abs=2e-4)
            assert views["layer 1", "head 0"] != pytest.approx(views["layer 1", "head 1"], abs=1e-3)


def test_panel_json_checks_weights_against_tokens() -> None:
    cells = grid_cells(8, 8, (2, 2))
    assert cells == [(0, 0, 4, 4), (0, 4, 4, 4), (4, 0, 4, 4), (4, 4, 4, 4)]
    assert grid_cells(8, 8, (2, 1), flip_rows=True) == [(4, 0, 4, 8), (0, 0, 4, 8)]
    panel = OverlayPanel("img", torch.rand(8, 8), cells, [View(("a", "b"), torch.ones(3))])
    with pytest.raises(ValueError, match="3 weights for 4 tokens"):
        panel_json(panel)
    panel = TokensPanel("t", ["x", "y"], [View(("only",), [0.5, 0.5])])
    with pytest.raises(ValueError, match="does not match the selectors"):
        panel_json(panel)
    two = [View(("a",), torch.ones(4)), View(("b",), torch.ones(4))]
    assert panel_json(OverlayPanel("img", torch.rand(8, 8), cells, two, ("w",)))["shown"] == 0
    assert (
        panel_json(OverlayPanel("img", torch.rand(8, 8), cells, two, ("w",), shown=1))["shown"] == 1
    )
    with pytest.raises(ValueError, match="shown=2 but 2 views"):
        panel_json(OverlayPanel("img", torch.rand(8, 8), cells, two, ("w",), shown=2))
    series = SeriesPanel("s", [], [View(("l", "h"), [1.0, 0.0])], spans=[(-4, -2), (-2, 0)])
    assert panel_json(series)["spans"] == [[-4.0, -2.0], [-2.0, 0.0]]


def test_layer_head_views_rollout_and_heads() -> None:
    g = torch.Generator().manual_seed(0)
    layers = [torch.rand(2, 5, 5, generator=g).softmax(-1) for _ in range(3)]  # (H, L, L) each
    views = layer_head_views(layers, lambda a: a[0])
    keys = [v.key for v in views]
    assert keys[0] == ("rollout", "mean") and len(keys) == 1 + 3 * (1 + 2)
    assert torch.allclose(views[1].weights, layers[0].mean(0)[0])
    assert torch.allclose(views[3].weights, layers[0][1][0])
    assert float(views[0].weights.sum()) == pytest.approx(1.0, abs=1e-5)


def test_page_data_survives_a_closing_script_tag_in_a_title() -> None:
    panel = panel_json(TokensPanel("</script><b>x", ["a"], [View(("l", "h"), [1.0])]))
    section = {
        "app": "toy", "description": "d", "run": "r", "name": "r", "checkpoint": "best.ckpt",
        "headline": "", "panels": [panel],
    }  # fmt: skip
    text = render_page([section])
    parse_page(text)
    assert atlas_data(text)["runs"][0]["panels"][0]["title"] == "</script><b>x"


def test_refuses_to_overwrite_and_names_bad_run_folders(
    tmp_path: Path, trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "atlas.html"
    out.write_text("mine")
    assert main(["atlas", str(trained_run), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err and "--force" in err
    assert out.read_text() == "mine"

    missing = tmp_path / "nope"
    assert main(["atlas", str(missing), "--out", str(tmp_path / "a.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: run folder {missing} does not exist; pass folders written by `attnlab <app> fit`"
    )

    no_config = tmp_path / "half"
    no_config.mkdir()
    assert main(["atlas", str(trained_run), str(no_config), "--out", str(tmp_path / "a.html")]) == 1
    assert "has no config.yaml" in capsys.readouterr().err

    no_ckpt = tmp_path / "untrained"
    no_ckpt.mkdir()
    shutil.copy(trained_run / "config.yaml", no_ckpt / "config.yaml")
    assert main(["atlas", str(no_ckpt), "--out", str(tmp_path / "a.html")]) == 1
    assert "has no checkpoints/best.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "a.html").exists()


def test_page_in_headless_chromium(headless_chromium: Any, toy_atlas: Path) -> None:
    page = headless_chromium(toy_atlas)
    assert page.console == []
    assert page.body["data-atlas-check"] == "ok"
    # 2 runs x 2 samples; every figure visible and drawn; switching the layer redraws each
    assert page.body["data-figures"] == page.body["data-visible"] == "4"
    assert page.body["data-selectable"] == page.body["data-switched"] == "4"
    assert page.dom.count("<canvas") == 4 and page.dom.count("<select") == 8


def test_browser_check_catches_a_broken_page(
    headless_chromium: Any, toy_atlas: Path, tmp_path: Path
) -> None:
    """The check above can fail: console messages, hidden figures and undrawable data all show."""
    text = toy_atlas.read_text(encoding="utf-8")
    noisy = tmp_path / "noisy.html"
    noisy.write_text(
        text.replace("<script>", "<script>console.error('boom');null.x;</script><script>", 1)
    )
    page = headless_chromium(noisy)
    assert any("boom" in line for line in page.console)
    assert any("Uncaught TypeError" in line for line in page.console)

    hidden = tmp_path / "hidden.html"
    hidden.write_text(text.replace("</style>", "#r1p1 canvas{display:none}</style>", 1))
    check = headless_chromium(hidden).body["data-atlas-check"]
    assert check.startswith("fail") and "r1p1 is not visible" in check

    data = atlas_data(text)
    data["runs"][0]["panels"][0]["kind"] = "unknown"
    start = text.index("id='atlas-data'>") + len("id='atlas-data'>")
    end = text.index("</script>", start)
    broken = tmp_path / "broken.html"
    broken.write_text(text[:start] + json.dumps(data) + text[end:])
    assert headless_chromium(broken).body["data-atlas-check"].startswith("fail")
