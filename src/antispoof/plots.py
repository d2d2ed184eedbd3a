"""Plots for every replicate, readable offline: DVC templates, combined plot data, report figures.

* `TEMPLATES`: Vega-Lite specs of the custom `dvc plots` templates in `.dvc/plots/` (one line per
  replicate plus their mean and a ±1 std band; DET curves faceted by condition, one line per replicate;
  score histograms faceted by replicate). The JSON files there are written from these specs
  (`python -m antispoof.plots --write-templates`; a test keeps them in sync).
* `figure(name, rows)`: the same specs with the data inlined, for the SVG figures of
  reports/aggregate.md (rendered offline by `antispoof.vega`).
* `offline_html_template()`: the page `dvc plots show` fills (`plots.html_template` in `.dvc/config`),
  with Vega, Vega-Lite and vega-embed inlined from the vl-convert wheel instead of loaded from a CDN.
  Written by the `plots-template` stage to plots/offline.html (a cached output, ~0.9 MB, not in git).

CSV values reach DVC templates as strings, so every template converts its numeric fields first.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from antispoof.repro import atomic_write_text

TEMPLATE_DIR = Path(".dvc/plots")
HTML_TEMPLATE = Path("plots/offline.html")
VEGA_LITE_VERSION = "5.21"  # DVC's templates are Vega-Lite v5 specs
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
DATA, X, Y, TITLE = "<DVC_METRIC_DATA>", "<DVC_METRIC_X>", "<DVC_METRIC_Y>", "<DVC_METRIC_TITLE>"
REPLICATE_COLORS = {"field": "replicate", "type": "nominal", "title": "replicate",
                    "scale": {"scheme": "tableau10"}}
# Probit axis ticks: the normal quantiles of 0.01 %, 0.1 %, 1 %, 5 %, 20 %, 50 %, 80 %, 95 %, 99 %, 99.9 %, 99.99 %.
PROBIT_TICKS = [-3.719016485456, -3.090232306168, -2.326347874041, -1.644853626951, -0.841621233573, 0.0,
                0.841621233573, 1.644853626951, 2.326347874041, 3.090232306168, 3.719016485456]


def _numbers(*fields: str) -> list[dict]:
    return [{"calculate": f"toNumber(datum['{f}'])", "as": f} for f in fields]


def _probit_axis(title: str) -> dict:
    return {"type": "quantitative", "title": title, "scale": {"domain": [-3.8, 3.8], "nice": False, "zero": False},
            "axis": {"values": PROBIT_TICKS, "labelExpr": "format(100 * cumulativeNormal(datum.value), '.4~g')",
                     "grid": True}}


def replicates_template() -> dict:
    """y against x, one thin line per replicate, the mean across replicates (thick) and mean ± 1 std."""
    x = {"field": X, "type": "quantitative", "title": X}
    y = {"field": Y, "type": "quantitative", "title": Y, "scale": {"zero": False}}
    return {
        "$schema": SCHEMA,
        "description": "One line per seed replicate (color), their mean (black) and mean ± 1 std (grey band). "
                       "Data: plots/replicates/curves.csv (column replicate), written by the aggregate stage.",
        "data": {"values": DATA},
        "title": TITLE,
        "width": 420, "height": 260,
        "transform": _numbers(X, Y, "replicate"),
        "layer": [
            {"mark": {"type": "errorband", "extent": "stdev", "color": "#888888", "opacity": 0.3},
             "encoding": {"x": x, "y": {**y, "title": Y}, "detail": {"field": "rev", "type": "nominal"}}},
            {"mark": {"type": "line", "strokeWidth": 1.2, "opacity": 0.75},
             "encoding": {"x": x, "y": y, "color": REPLICATE_COLORS,
                          "strokeDash": {"field": "rev", "type": "nominal", "title": "revision"},
                          "tooltip": [{"field": "replicate"}, {"field": X, "type": "quantitative"},
                                      {"field": Y, "type": "quantitative"}, {"field": "rev"}]}},
            {"mark": {"type": "line", "strokeWidth": 3, "color": "black"},
             "encoding": {"x": x, "y": {**y, "aggregate": "mean"}, "detail": {"field": "rev", "type": "nominal"}}},
        ],
    }


def det_template() -> dict:
    """DET curves on probit axes, one panel per evaluation condition, one line per replicate."""
    return {
        "$schema": SCHEMA,
        "description": "DET curves (probit axes; labels are rates in %), one panel per condition, one line per "
                       "replicate. The dashed diagonal is P_fa = P_miss: a curve crosses it at its EER. "
                       "Data: plots/replicates/det.csv, written by the aggregate stage.",
        "data": {"values": DATA},
        "title": TITLE,
        "transform": _numbers(X, Y, "replicate", "p_fa", "p_miss")
        + [{"calculate": f"datum['{Y}'] - datum['{X}']", "as": "det_order"}],
        "facet": {"field": "condition", "type": "nominal", "title": None, "sort": {"field": "condition_order", "op": "min"}},
        "columns": 2,
        "spec": {
            "width": 230, "height": 230,
            "layer": [
                {"mark": {"type": "rule", "color": "#999999", "strokeDash": [4, 4]},
                 "encoding": {"x": {"datum": -3.8, **_probit_axis("False alarm rate (%)")},
                              "y": {"datum": -3.8, **_probit_axis("Miss rate (%)")},
                              "x2": {"datum": 3.8}, "y2": {"datum": 3.8}}},
                {"mark": {"type": "line", "clip": True, "strokeWidth": 1.2},
                 "encoding": {"x": {"field": X, **_probit_axis("False alarm rate (%)")},
                              "y": {"field": Y, **_probit_axis("Miss rate (%)")},
                              "order": {"field": "det_order", "type": "quantitative"},
                              "color": REPLICATE_COLORS,
                              "detail": {"field": "rev", "type": "nominal"},
                              "tooltip": [{"field": "replicate"}, {"field": "rev"},
                                          {"field": "p_fa", "type": "quantitative", "format": ".4%", "title": "P_fa"},
                                          {"field": "p_miss", "type": "quantitative", "format": ".4%", "title": "P_miss"}]}},
            ],
        },
        "resolve": {"scale": {"x": "shared", "y": "shared"}},
    }


def hist_template() -> dict:
    """Score histograms per class on clean audio, one small panel per replicate."""
    return {
        "$schema": SCHEMA,
        "description": "Score histograms per class (clean eval audio), one panel per replicate (raw scores: "
                       "higher = more bona fide). Data: plots/replicates/hist.csv, written by the aggregate stage.",
        "data": {"values": DATA},
        "title": TITLE,
        "transform": _numbers(X, Y, "replicate"),
        "facet": {"field": "replicate", "type": "ordinal", "title": "replicate"},
        "columns": 5,
        "spec": {
            "width": 150, "height": 90,
            "mark": {"type": "area", "interpolate": "step", "opacity": 0.55},
            "encoding": {"x": {"field": X, "type": "quantitative", "title": "score"},
                         "y": {"field": Y, "type": "quantitative", "title": "count", "stack": None},
                         "color": {"field": "label", "type": "nominal", "title": "class",
                                   "scale": {"domain": ["bonafide", "spoof"], "range": ["#1f77b4", "#d62728"]}},
                         "detail": {"field": "rev", "type": "nominal"}},
        },
        "resolve": {"scale": {"x": "independent", "y": "independent"}},
    }


def calibration_template() -> dict:
    """Cllr per condition, mean over replicates: raw, calibrated and the PAV floor (minCllr)."""
    return {
        "$schema": SCHEMA,
        "description": "Mean over replicates of Cllr (bits) per condition: raw scores, after the dev-fitted "
                       "calibration, and minCllr (the floor). The dashed line is 1 bit, a system that always "
                       "answers 'don't know'. Data: plots/calibration.csv, written by the aggregate stage.",
        "data": {"values": DATA},
        "title": TITLE,
        "transform": _numbers(X),
        "width": 380, "height": {"step": 12},
        "layer": [
            {"mark": "bar",
             "encoding": {"y": {"field": Y, "type": "nominal", "title": None, "sort": None},
                          "yOffset": {"field": "scores", "sort": ["raw", "calibrated", "minimum (PAV)"]},
                          "x": {"field": X, "type": "quantitative", "title": "Cllr (bits)"},
                          "color": {"field": "scores", "type": "nominal", "title": "scores",
                                    "sort": ["raw", "calibrated", "minimum (PAV)"]},
                          "tooltip": [{"field": Y}, {"field": "scores"}, {"field": X, "type": "quantitative", "format": ".4f"}]}},
            {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "black"}, "encoding": {"x": {"datum": 1}}},
        ],
    }


TEMPLATES = {"replicates": replicates_template, "det_replicates": det_template,
             "hist_replicates": hist_template, "calibration": calibration_template}


def _fill(value: Any, anchors: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, anchors) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, anchors) for v in value]
    if isinstance(value, str):
        if value in anchors:
            return anchors[value]
        for anchor, text in anchors.items():
            if isinstance(text, str):
                value = value.replace(anchor, text)
    return value


def _without_revisions(value: Any) -> Any:
    """Drop the encodings by DVC's `rev` field (one revision in a report: they would draw a legend of nulls)."""
    if isinstance(value, dict):
        return {k: _without_revisions(v) for k, v in value.items()
                if not (isinstance(v, dict) and v.get("field") == "rev")}
    if isinstance(value, list):
        return [_without_revisions(v) for v in value if not (isinstance(v, dict) and v.get("field") == "rev")]
    return value


def figure(name: str, rows: list[dict], x: str, y: str, title: str) -> dict:
    """Template `name` with its DVC anchors filled: a standalone Vega-Lite spec for the report."""
    spec = _without_revisions(_fill(TEMPLATES[name](), {DATA: rows, X: x, Y: y, TITLE: title}))
    spec["config"] = {"font": "DejaVu Sans"}  # a font vl-convert finds on any Linux: stable SVG text metrics
    return spec


def write_templates(directory: Path = TEMPLATE_DIR) -> None:
    for name, make in TEMPLATES.items():
        atomic_write_text(directory / f"{name}.json", json.dumps(make(), indent=2) + "\n")


def offline_html_template() -> str:
    """A `dvc plots show` page template with the Vega bundle inlined: renders with no network."""
    import vl_convert as vlc

    bundle = vlc.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n{refresh_tag}\n<title>DVC plots (offline)</title>\n"
            "<!-- Vega, Vega-Lite and vega-embed from the vl-convert-python wheel "
            f"(Vega {vlc.get_vega_version()}, Vega-Lite {VEGA_LITE_VERSION}, vega-embed {vlc.get_vega_embed_version()}) -->\n"
            f"<script type=\"text/javascript\">{bundle}</script>\n"
            "<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>\n"
            "</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m antispoof.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html-template", metavar="FILE", nargs="?", const=str(HTML_TEMPLATE),
                        help=f"write the offline page template for `dvc plots show` (default: {HTML_TEMPLATE})")
    parser.add_argument("--write-templates", action="store_true",
                        help=f"(re)write the dvc plots templates in {TEMPLATE_DIR}/ from this module")
    args = parser.parse_args(argv)
    if not (args.html_template or args.write_templates):
        parser.error("nothing to do: pass --html-template and/or --write-templates")
    if args.write_templates:
        write_templates()
    if args.html_template:
        atomic_write_text(args.html_template, offline_html_template())
        print(f"wrote {args.html_template}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
