"""Offline chart rendering (antispoof.vega): real vl-convert, no network."""
from __future__ import annotations

import re

import pytest

from antispoof.vega import save_chart

SPEC = {"data": {"values": [{"x": 1, "y": 2}, {"x": 2, "y": 3}, {"x": 3, "y": 1}]}, "mark": "point",
        "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"}}}


def test_svg_draws_one_mark_per_point_and_is_byte_stable(tmp_path):
    a, b = save_chart(SPEC, tmp_path / "a.svg"), save_chart(SPEC, tmp_path / "b.svg")
    svg = a.read_text()
    assert svg.startswith("<svg")
    assert len(re.findall(r'<path[^>]*aria-roledescription="point"', svg)) == 3
    assert a.read_bytes() == b.read_bytes()


def test_png_and_html_are_written_and_the_page_loads_nothing_from_the_web(tmp_path):
    assert save_chart(SPEC, tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = save_chart(SPEC, tmp_path / "c.html").read_text()
    assert "vegaEmbed" in page or "vega-embed" in page
    assert not re.search(r"<script[^>]+src=", page), "the page must inline its scripts"


def test_an_unknown_suffix_is_refused_before_rendering(tmp_path):
    with pytest.raises(ValueError, match=r"\.svg, \.png, \.html"):
        save_chart(SPEC, tmp_path / "chart.pdf")
    assert not (tmp_path / "chart.pdf").exists()
