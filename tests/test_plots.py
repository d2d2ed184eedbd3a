"""Plot templates and report figures: templates in sync with antispoof.plots, SVG bytes stable."""
from __future__ import annotations

import json
import subprocess
import sys

from antispoof import plots

from conftest import REPO


def test_dvc_plot_templates_are_the_ones_antispoof_plots_writes():
    for name, make in plots.TEMPLATES.items():
        on_disk = json.loads((REPO / ".dvc/plots" / f"{name}.json").read_text())
        assert on_disk == make(), f".dvc/plots/{name}.json is stale: run python -m antispoof.plots --write-templates"


def test_report_figures_are_byte_identical_across_processes(tmp_path):
    rows = [{"replicate": str(r), "epoch": str(e), "train_loss": f"{1 / (e + r):.6f}"} for r in range(3) for e in range(1, 5)]
    spec = plots.figure("replicates", rows, "epoch", "train_loss", "Training loss")
    assert "rev" not in json.dumps(spec)  # DVC's revision field has no place in a report figure
    code = ("import json, sys; from antispoof.vega import save_chart; "
            "save_chart(json.loads(sys.argv[1]), sys.argv[2])")
    for name in ("a.svg", "b.svg"):
        subprocess.run([sys.executable, "-c", code, json.dumps(spec), str(tmp_path / name)], check=True, timeout=120)
    a = (tmp_path / "a.svg").read_bytes()
    assert a == (tmp_path / "b.svg").read_bytes()
    assert a.startswith(b"<svg") and a.count(b"<path") >= 4  # a band, three replicate lines, a mean line

