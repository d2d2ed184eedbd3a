"""Results end to end through the real DVC CLI on tiny params: `dvc exp run -S 'replicates=[0,1,2,3,4]'`,
then what a researcher reads and ships:
plot data of every replicate, calibrated scores, the offline `dvc plots show` page in headless Chromium
with networking disabled, and the registered detector fetched with `dvc artifacts get`."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from antispoof import calibration, metrics
from antispoof.models import build_model

from conftest import make_project, tiny_params

REPLICATES = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def five(tmp_path_factory, bytecode_cache):
    """A tiny project (2 replicates in params.yaml) run as an experiment with 5 replicates."""
    p = make_project(tmp_path_factory.mktemp("results"), tiny_params())
    p.env.update(bytecode_cache)
    p.dvc("exp", "run", "-S", f"replicates={REPLICATES}")
    return p


def test_every_per_replicate_plot_shows_all_five_replicates(five):
    shown = json.loads(five.dvc("plots", "show", "--json").stdout)["data"]
    per_replicate = [name for name in shown if "each replicate" in name]
    assert len(per_replicate) == 4, list(shown)  # loss, dev EER, DET, histograms
    for name in per_replicate:
        values = shown[name][0]["content"]["data"]["values"]
        assert sorted({int(v["replicate"]) for v in values}) == REPLICATES, name
    det = pd.read_csv(five.root / "plots/replicates/det.csv")
    assert set(det.groupby("condition")["replicate"].nunique()) == {5}
    report = (five.root / "reports/aggregate.md").read_text()
    for name in ("train_loss", "dev_eer", "det", "calibration"):
        svg = (five.root / f"reports/figures/{name}.svg").read_text()
        assert svg.startswith("<svg") and f"](figures/{name}.svg)" in report
    legend = (five.root / "reports/figures/train_loss.svg").read_text()
    assert all(f">{r}</text>" in legend for r in REPLICATES)  # one legend entry per replicate


def test_calibration_is_fitted_on_dev_and_min_cllr_is_a_floor(five):
    root = five.root
    manifest = pd.read_csv(root / "data/prepared/manifest.csv").set_index("utt_id")
    for r in REPLICATES:
        ev = json.loads((root / f"metrics/eval/r{r}.json").read_text())[f"eval_r{r}"]
        dev = metrics.read_scores(root / f"scores/r{r}/dev/clean.txt")
        assert set(manifest.loc[list(dev), "split"]) == {"dev"}
        values = np.fromiter(dev.values(), dtype=np.float64)
        is_bona = (manifest.loc[list(dev), "label"] == "bonafide").to_numpy()
        # Refitted here from the recorded dev scores: the same map, to the bit, as the stage's.
        slope, offset = calibration.fit_logistic(values[is_bona], values[~is_bona])
        assert ev["calibration"] == {"slope": round(slope, 6), "offset": round(offset, 6)}
        for cond in ("clean", "mulaw"):
            raw = metrics.read_scores(root / f"scores/r{r}/{cond}.txt")
            cal = metrics.read_scores(root / f"scores/r{r}/calibrated/{cond}.txt")
            assert list(cal) == list(raw)
            expected = slope * np.fromiter(raw.values(), dtype=np.float64) + offset
            assert np.fromiter(cal.values(), dtype=np.float64).tobytes() == expected.tobytes()
            m = ev[cond]
            assert m["min_cllr"] <= m["cllr_cal"] + 1e-6 and m["min_cllr"] <= m["cllr"] + 1e-6, (r, cond, m)
            labels = manifest.loc[list(cal), "label"].to_numpy() == "bonafide"
            c = expected
            assert m["act_dcf_cal"] == round(metrics.act_dcf(c[labels], c[~labels]), 6)


def test_best_replicate_is_registered_and_fetched_with_dvc_artifacts_get(five, tmp_path):
    root = five.root
    manifest = pd.read_csv(root / "data/prepared/manifest.csv").set_index("utt_id")
    dev_eer = {}
    for r in REPLICATES:
        dev = metrics.read_scores(root / f"scores/r{r}/dev/clean.txt")
        is_bona = (manifest.loc[list(dev), "label"] == "bonafide").to_numpy()
        values = np.fromiter(dev.values(), dtype=np.float64)
        dev_eer[r] = metrics.eer(values[is_bona], values[~is_bona])
    best = min(REPLICATES, key=lambda r: (dev_eer[r], r))
    card = json.loads((root / "models/best/card.json").read_text())
    assert card["replicate"] == best
    assert (root / "models/best/model.pt").read_bytes() == (root / f"models/r{best}/model.pt").read_bytes()
    info = json.loads((root / f"models/r{best}/model.json").read_text())
    assert card["run_fingerprint"] == info["run_fingerprint"] and card["effective_seed"] == info["effective_seed"]
    assert card["params"]["model"] == five.params()["model"]

    five.commit("5 replicates")
    five.run("git", "tag", "-a", "detector@v1.0.0", "-m", "register the detector")
    out = tmp_path / "fetched"
    five.run(str(Path(sys.executable).parent / "dvc"), "artifacts", "get", str(root), "detector", "-o", str(out))
    assert (out / "model.pt").read_bytes() == (root / "models/best/model.pt").read_bytes()
    # The README's one-liner, run where the artifact landed: weights_only=True loading.
    snippet = json.loads((out / "card.json").read_text())["load"].replace('"best/', f'"{out}/')
    five.run(sys.executable, "-c", snippet + "; print(sum(p.numel() for p in model.parameters()))")
    model = build_model(card["params"]["model"], card["sample_rate"])
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))


# ---------------------------------------------------------------------------------------- browser
PROBE = """<script>
window.__errors = [];
function __record(msg) { window.__errors.push(String(msg)); document.documentElement.setAttribute('data-errors', JSON.stringify(window.__errors)); }
window.addEventListener('error', function (e) { __record(e.message || ('failed to load ' + (e.target && (e.target.src || e.target.href)))); }, true);
window.addEventListener('unhandledrejection', function (e) { __record('unhandled rejection: ' + e.reason); });
var __consoleError = console.error; console.error = function () { __record(Array.from(arguments).join(' ')); __consoleError.apply(console, arguments); };
</script>"""


def browser() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def render_offline(exe: str, page: Path, profile: Path) -> tuple[int, int, list[str]]:
    """Open `page` (with an error probe injected first in <head>) in headless Chromium whose proxy goes
    nowhere: (chart containers, charts drawn, errors recorded)."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                           "--virtual-time-budget=20000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    containers = len(re.findall(r'<div id="[^"]*" class="vega-embed', dom))
    drawn = dom.count('class="mark-group role-frame root"') + dom.count("<canvas")
    match = re.search(r"<html[^>]*data-errors=\"([^\"]*)\"", dom)
    errors = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&")) if match else []
    return containers, drawn, errors


def test_plots_page_draws_offline_in_headless_chromium(five, tmp_path):
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium on this machine and none could be installed (.ci/run installs the Debian "
                    "package 'chromium'): the offline page was not opened in a browser")
    n_plots = len(json.loads(five.dvc("plots", "show", "--json").stdout)["data"])
    five.dvc("plots", "show", "-o", str(tmp_path / "offline"))
    containers, drawn, errors = render_offline(exe, tmp_path / "offline/index.html", tmp_path / "profile")
    assert errors == [] and containers == n_plots and drawn == n_plots, (containers, drawn, errors)

    # Control: DVC's default page (Vega from a CDN) draws nothing in the same browser: the network is off.
    from dvc_render.html import PAGE_HTML

    (tmp_path / "cdn.html").write_text(PAGE_HTML)
    five.dvc("plots", "show", "--html-template", str(tmp_path / "cdn.html"), "-o", str(tmp_path / "cdn"))
    containers, drawn, errors = render_offline(exe, tmp_path / "cdn/index.html", tmp_path / "profile")
    assert drawn == 0 and errors, (containers, drawn, errors)
