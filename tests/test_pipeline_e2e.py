"""End to end through the real DVC CLI: repro, a seed experiment, exp show, metrics diff."""
from __future__ import annotations

import json

import pandas as pd


def test_repro_then_seed_experiment(tiny_project):
    p = tiny_project
    p.dvc("repro")
    root = p.root
    manifest = pd.read_csv(root / "data/prepared/manifest.csv")
    assert set(manifest["split"]) == {"train", "dev", "eval"}
    assert set(manifest["label"]) == {"bonafide", "spoof"}
    for r in (0, 1):
        assert (root / f"models/r{r}/model.pt").stat().st_size > 0
        scores = (root / f"scores/r{r}/clean.txt").read_text().splitlines()
        assert len(scores) == (manifest["split"] == "eval").sum()
        assert (root / f"scores/r{r}/mulaw.txt").exists()
        ev = json.loads((root / f"metrics/eval/r{r}.json").read_text())[f"eval_r{r}"]
        assert set(ev) >= {"pooled", "clean", "mulaw"}
        assert 0 <= ev["clean"]["eer"] <= 1
    seeds = [json.loads((root / f"metrics/train/r{r}.json").read_text())[f"train_r{r}"]["effective_seed"] for r in (0, 1)]
    assert seeds[0] == 42 and seeds[1] != 42
    agg = json.loads((root / "metrics/aggregate.json").read_text())["aggregate"]
    assert agg["clean"]["eer"]["n"] == 2 and agg["replicates"]["effective_seeds"] == seeds
    assert "| clean |" in (root / "reports/aggregate.md").read_text()
    assert "up to date" in p.dvc("status").stdout
    p.commit("baseline results")

    out = p.dvc("exp", "run", "--set-param", "seed=123").stdout
    assert "Stage 'prepare' didn't change, skipping" in out
    assert "Stage 'augment-cache' didn't change, skipping" in out
    assert "Running stage 'train@0'" in out and "Running stage 'aggregate'" in out

    shown = json.loads(p.dvc("exp", "show", "--json").stdout)
    # Rows: the workspace, the baseline commit, and the baseline's experiments.
    rows = [row for base in shown for row in [base] + [rev for e in (base.get("experiments") or []) for rev in e["revs"]]]
    # exp show wraps each params file's values in a "data" key (as it does for metrics files)
    master_seeds = sorted(row["data"]["params"]["params.yaml"]["data"]["seed"] for row in rows)
    assert set(master_seeds) == {42, 123}
    for row in rows:
        agg_row = row["data"]["metrics"]["metrics/aggregate.json"]["data"]["aggregate"]
        assert agg_row["clean"]["eer"]["n"] == 2

    diff = json.loads(p.dvc("metrics", "diff", "--all", "--json").stdout)
    changed = diff["metrics/aggregate.json"]
    assert "aggregate.clean.eer.mean" in changed
    old, new = changed["aggregate.clean.eer.mean"]["old"], changed["aggregate.clean.eer.mean"]["new"]
    assert old is not None and new is not None
