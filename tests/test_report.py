"""Tests of fmw.export.report and fmw.export.files: the HTML report parses, embeds plotly.js once and holds every
figure; bad images and checkpoints become error lines with the documented exit status; downloads."""

from __future__ import annotations

import io
from html.parser import HTMLParser

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from fmw.analysis import analyse_image
from fmw.cli.report import main
from fmw.export import analysis_arrays, figure_html, gates_csv, npz_bytes
from fmw.io import load_checkpoint

TINY = {"stem_width": 4, "widths": (8, 8), "num_classes": 3}
PLOTLY_BANNER = "* plotly.js v"


class PageParser(HTMLParser):
    """Collects figure divs, error paragraphs and headings; fails on unbalanced tags."""

    def __init__(self) -> None:
        super().__init__()
        self.figures = 0
        self.errors: list[str] = []
        self.headings: list[str] = []
        self.open: list[str] = []
        self._capture: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "div" and "plotly-graph-div" in (attributes.get("class") or ""):
            self.figures += 1
        if tag == "p" and attributes.get("class") == "error":
            self._capture = self.errors
        if tag in {"h1", "h2", "h3", "h4"}:
            self._capture = self.headings
        if tag not in {"meta", "br"}:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}> after {self.open[-3:]}"
        self.open.pop()
        self._capture = None

    def handle_data(self, data):
        if self._capture is not None:
            self._capture.append(data)


def parse(path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert parser.open == []
    return parser


def write_png(path, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def figures_per_pair(attribution: bool = True, sites: int = 2) -> int:
    """top-5 (+ attribution overlay) + one figure per site (maps before and after, gates)."""
    return 1 + int(attribution) + sites


def test_report_has_every_figure_once_and_plotly_once(tmp_path, checkpoint_factory, capsys):
    checkpoints = [checkpoint_factory("channel", **TINY), checkpoint_factory("cbam", **TINY)]
    images = [write_png(tmp_path / "one.png"), write_png(tmp_path / "two.png", size=(20, 50), seed=1)]
    out = tmp_path / "report.html"
    arguments = [str(p) for p in images] + ["--out", str(out), "--steps", "4", "--device", "cpu"]
    for checkpoint in checkpoints:
        arguments += ["--checkpoint", str(checkpoint)]
    assert main(arguments) == 0, capsys.readouterr().err
    page = parse(out)
    assert page.figures == 2 * 2 * figures_per_pair()
    assert page.errors == []
    html = out.read_text()
    assert html.count(PLOTLY_BANNER) == 1 and html.count("<script src=") == 0  # inline, no network
    assert sum(heading.startswith("Image ") for heading in page.headings) == 2
    assert any("attribution" not in h and h.startswith("channel: ") for h in page.headings)
    assert "Integrated Gradients for" in html  # the registry's title of the method


def test_bad_image_gets_an_error_line_and_exit_status_one(tmp_path, checkpoint_factory, capsys):
    checkpoint = checkpoint_factory("spatial", **TINY)
    good = write_png(tmp_path / "good.png")
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "report.html"
    code = main(
        [
            str(bad),
            str(good),
            str(missing),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--attribution",
            "saliency",
            "--device",
            "cpu",
        ]
    )
    assert code == 1
    page = parse(out)
    assert page.figures == figures_per_pair()
    assert len(page.errors) == 2
    assert "notes.png" in page.errors[0] and "not a supported image" in page.errors[0]
    assert "missing.jpg" in page.errors[1] and "cannot read the file" in page.errors[1]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("fmw report: ") for line in err)


def test_unloadable_checkpoints(tmp_path, checkpoint_factory, capsys):
    good = write_png(tmp_path / "good.png")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x80\x04not a checkpoint")
    out = tmp_path / "report.html"
    assert main([str(good), "--checkpoint", str(broken), "--out", str(out)]) == 2
    assert not out.exists()
    assert "never unpickles" in capsys.readouterr().err
    checkpoint = checkpoint_factory("none", **TINY)
    code = main(
        [
            str(good),
            "--checkpoint",
            str(broken),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--attribution",
            "none",
            "--device",
            "cpu",
        ]
    )
    assert code == 1
    page = parse(out)
    assert page.figures == figures_per_pair(attribution=False) and len(page.errors) == 1


def test_exports_round_trip(checkpoint_factory):
    loaded = load_checkpoint(checkpoint_factory("cbam", **TINY)).handle()
    rgb = np.random.default_rng(0).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    analysis = analyse_image(loaded, rgb, resolution=16)
    text = gates_csv(analysis.sites)
    lines = text.strip().split("\n")
    assert lines[0] == "site,kind,stage,layout,channel,row,column,gate"
    expected_rows = sum(site.channels + site.spatial_gate.size for site in analysis.sites)
    assert len(lines) == 1 + expected_rows
    site = analysis.sites[1]
    channel_rows = [line.split(",") for line in lines if line.startswith(f"{site.name},cbam,channel,")]
    np.testing.assert_array_equal([float(row[-1]) for row in channel_rows], site.channel_gate)
    arrays = np.load(io.BytesIO(npz_bytes(analysis_arrays(analysis))))
    np.testing.assert_array_equal(arrays[f"{site.name}.after"], site.after)
    np.testing.assert_array_equal(arrays[f"{site.name}.spatial_gate"], site.spatial_gate)
    np.testing.assert_array_equal(arrays["crop"], analysis.crop)
    assert arrays["probabilities"].shape == (3,)
    page = figure_html(go.Figure(go.Bar(y=[1, 2]))).decode()
    assert page.lower().startswith("<!doctype html>") and page.count(PLOTLY_BANNER) == 1


@pytest.mark.parametrize("arguments", [[], ["image.png"], ["image.png", "--checkpoint", "x"]])
def test_missing_arguments_exit_two(arguments, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
