"""Vega-Lite charts rendered offline, by vl-convert (Vega runs inside the wheel: no browser, no network).

`save_chart(spec, path)` writes SVG, PNG or a standalone HTML page (Vega, Vega-Lite and vega-embed
inlined) chosen by the file's suffix, atomically. Lab compute nodes are often offline, so nothing here
may load a script or a font from the web.
"""
from __future__ import annotations

import os
from pathlib import Path

from antispoof.repro import atomic_write_bytes, atomic_write_text

SUFFIXES = (".svg", ".png", ".html")


def render(spec: dict, fmt: str) -> bytes:
    """The chart as bytes in `fmt` ('svg', 'png' or 'html')."""
    import vl_convert as vlc  # imported on use: only plotting needs it

    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode("utf-8")
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=2)
    if fmt == "html":
        return vlc.vegalite_to_html(spec, bundle=True).encode("utf-8")
    raise ValueError(f"unknown chart format {fmt!r}; expected one of svg, png, html")


def save_chart(spec: dict, path: str | os.PathLike) -> Path:
    """Write `spec` to `path` in the format its suffix names (.svg, .png or .html)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: a chart is written as {', '.join(SUFFIXES)}")
    data = render(spec, path.suffix.lower().lstrip("."))
    if path.suffix.lower() == ".png":
        atomic_write_bytes(path, data)
    else:
        atomic_write_text(path, data.decode("utf-8"))
    return path
