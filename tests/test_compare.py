"""`antispoof-compare` on real DVC experiments (tiny params, real training) in a temporary git repository.

One module-scoped lab builds, in order: the baseline commit (seed 42, replicates r0 r1); experiment
`a-r3` (same configuration, replicates r0-r2: r0 and r1 duplicate the baseline's seeds); `b-42`
(model.lcnn.dropout 0, seed 42, r0-r2: shares all three effective seeds with the baseline group: paired);
`c-100` (model.lcnn.dropout 0.1, seed 100: no shared seed: Welch); `bad` (a queued run whose train stage
rejects model.lcnn.dropout 0.99: failed); `waiting` (queued, never started). Every number of `--json` is then
recomputed here from the per-replicate metrics files read with `git show`, with scipy called directly.
"""
from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from conftest import BIN, make_project, tiny_params

METRIC = "pooled.eer"
BASE_PARAMS = tiny_params(
    replicates=[0, 1],
    data={"synthetic": {"speakers": 6, "utterances_per_speaker": 12}},
    augment={"prob": 0, "train": [], "eval": [], "num_shards": 1},
    train={"epochs": 1},
)
BOOTSTRAP_SEED = 20240229  # the documented resampling seed of antispoof-compare


def _wait_queue(p, done: str, timeout: float = 180) -> str:
    """Poll `dvc queue status` until its output matches `done`."""
    end = time.time() + timeout
    while time.time() < end:
        out = p.dvc("queue", "status").stdout
        if re.search(done, out):
            return out
        time.sleep(2)  # each poll starts dvc (~1 s of CPU)
    raise AssertionError(f"dvc queue status never matched {done!r}:\n{out}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    p = make_project(tmp_path_factory.mktemp("compare"), BASE_PARAMS)
    p.dvc("repro")
    p.commit("baseline results")
    # The failing run goes first, in the background: its queue worker's start-up overlaps the
    # workspace experiments below.
    p.dvc("exp", "run", "--queue", "-n", "bad", "-S", "model.lcnn.dropout=0.99")
    p.dvc("queue", "start")
    try:
        reps = "replicates=[0,1,2]"
        p.dvc("exp", "run", "-n", "a-r3", "-S", reps)
        p.dvc("exp", "run", "-n", "b-42", "-S", "model.lcnn.dropout=0.0", "-S", reps)
        p.dvc("exp", "run", "-n", "c-100", "-S", "model.lcnn.dropout=0.1", "-S", "seed=100", "-S", reps)
        _wait_queue(p, r"bad\s+\S+\s+\S+\s+Failed")
    finally:
        p.dvc("queue", "stop")
        _wait_queue(p, r"Worker status: 0 active, 0 idle")
    p.run("git", "checkout", "HEAD", "--", ".")  # the workspace back to the baseline commit's results
    p.dvc("exp", "run", "--queue", "-n", "waiting", "-S", "seed=5")  # no worker left to start it
    (p.root / "shown.json").write_text(p.dvc("exp", "show", "--json").stdout)
    return p


def compare(p, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, as a user runs it (it runs dvc exp show itself)."""
    return p.run(sys.executable, "-m", "antispoof.compare", *args, check=check)


def saved(lab, capsys, *args: str) -> tuple[int, str, str]:
    """compare's main() in this process on the saved `dvc exp show --json` (no dvc start-up per call)."""
    from antispoof.compare import main

    code = main(["--from-json", str(lab.root / "shown.json"), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def result(lab):
    """The real CLI, running dvc exp show itself; also writes the chart."""
    return json.loads(compare(lab, "--json", "--power", "--plot", "chart.svg").stdout)


def git_json(p, rev: str, path: str) -> dict:
    return json.loads(p.run("git", "show", f"{rev}:{path}").stdout)


def truth(p) -> dict:
    """Per-configuration {effective seed: pooled EER}, read straight from each run's committed files."""
    listing = p.run("git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").stdout
    # experiment refs are refs/exps/<baseline sha split 2/38>/<name>; the queue keeps others there too
    revs = {"main": "HEAD", **{m[2]: m[1] for m in re.finditer(r"(\w+) refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/(\S+)", listing)}}
    groups: dict = {}
    for name, rev in revs.items():
        params = yaml.safe_load(p.run("git", "show", f"{rev}:params.yaml").stdout)
        pool = groups.setdefault(params["model"]["lcnn"]["dropout"], {})
        for r in params["replicates"]:
            seed = git_json(p, rev, f"metrics/train/r{r}.json")[f"train_r{r}"]["effective_seed"]
            value = git_json(p, rev, f"metrics/eval/r{r}.json")[f"eval_r{r}"]["pooled"]["eer"]
            assert pool.setdefault(seed, value) == value, "same seed, same configuration, other value"
    return groups


def t_interval(values):
    x = np.asarray(values)
    half = stats.t.ppf(0.975, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x))
    return [x.mean() - half, x.mean() + half]


def test_groups_and_every_number_match_an_independent_recomputation(lab, result):
    want = truth(lab)
    assert set(want) == {0.2, 0.0, 0.1}
    assert result["metric"] == METRIC and result["baseline"] == "model.lcnn.dropout=0.2"
    groups = {g["params"]["model.lcnn.dropout"]: g for g in result["groups"]}
    assert set(groups) == set(want) and all(set(g["params"]) == {"model.lcnn.dropout"} for g in groups.values())
    assert sorted(groups[0.2]["runs"]) == ["a-r3", "main", "workspace"]
    assert groups[0.0]["runs"] == ["b-42"] and groups[0.1]["runs"] == ["c-100"]
    for dropout, g in groups.items():
        seeds = sorted(want[dropout])
        values = [want[dropout][s] for s in seeds]
        assert g["seeds"] == seeds and g["n"] == 3 and g["values"] == values
        assert g["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert g["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert g["ci"] == pytest.approx(t_interval(values), abs=1e-12)
        assert (g["min"], g["max"]) == (min(values), max(values))
        assert g["ci_crosses_bound"] == (g["ci"][0] < 0 or g["ci"][1] > 1)
    assert 42 in groups[0.2]["seeds"] and 42 in groups[0.0]["seeds"] and 100 in groups[0.1]["seeds"]


def test_paired_welch_bootstrap_improvement_and_holm(lab, result):
    want = truth(lab)
    base = want[0.2]
    comps = {c["group"]: c for c in result["comparisons"]}
    assert set(comps) == {"model.lcnn.dropout=0.0", "model.lcnn.dropout=0.1"}

    paired = comps["model.lcnn.dropout=0.0"]  # same master seed 42: the three effective seeds are shared
    shared = sorted(base)
    assert paired["test"] == "paired" and paired["n_paired"] == 3 and paired["seeds_paired"] == shared
    g, b = np.array([want[0.0][s] for s in shared]), np.array([base[s] for s in shared])
    ref = stats.ttest_rel(g, b)
    assert paired["diff"] == pytest.approx(np.mean(g - b), abs=1e-12)
    assert paired["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert paired["ci"] == pytest.approx(list(ref.confidence_interval(0.95)), abs=1e-12)
    boot = stats.bootstrap((g - b,), np.mean, n_resamples=9999, method="percentile",
                           rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    assert paired["bootstrap_ci"] == pytest.approx([boot.low, boot.high], abs=1e-12)
    assert paired["p_improvement"] == pytest.approx(np.mean([(x < y) + 0.5 * (x == y) for x, y in zip(g, b)]))

    welch = comps["model.lcnn.dropout=0.1"]  # master seed 100: nothing shared
    assert welch["test"] == "welch" and welch["n_paired"] == 0
    g, b = np.array(sorted_values(want[0.1])), np.array(sorted_values(base))
    ref = stats.ttest_ind(g, b, equal_var=False)
    assert welch["diff"] == pytest.approx(g.mean() - b.mean(), abs=1e-12)
    assert welch["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert welch["ci"] == pytest.approx(list(ref.confidence_interval(0.95)), abs=1e-12)
    boot = stats.bootstrap((g, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), n_resamples=9999,
                           method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    assert welch["bootstrap_ci"] == pytest.approx([boot.low, boot.high], abs=1e-12)
    assert welch["p_improvement"] == pytest.approx(np.mean([(x < y) + 0.5 * (x == y) for x, y in product(g, b)]))

    # Holm over the two comparisons: the smaller p times 2, the larger never below it
    (p1, c1), (p2, c2) = sorted((c["p"], c) for c in (paired, welch))
    assert c1["p_holm"] == pytest.approx(min(1, 2 * p1), abs=1e-12)
    assert c2["p_holm"] == pytest.approx(max(min(1, 2 * p1), p2), abs=1e-12)
    for c in (paired, welch):
        lo, hi = c["ci"]
        if c["p_holm"] < 0.05:
            assert c["verdict"].startswith("lower (better)" if c["diff"] < 0 else "higher (worse)")
            assert f"{abs(c['diff']) * 100:.2f} ± {(hi - lo) / 2 * 100:.2f} EER points" in c["verdict"]
        else:
            assert c["verdict"].startswith("no evidence of a difference")


def sorted_values(pool: dict) -> list:
    return [pool[s] for s in sorted(pool)]


def test_power_gives_the_smallest_n_reaching_80_percent(result):
    rows = result["power"]["rows"]
    assert {(r["group"], r["kind"]) for r in rows} == {
        ("model.lcnn.dropout=0.0", "paired"), ("model.lcnn.dropout=0.0", "unpaired"), ("model.lcnn.dropout=0.1", "unpaired")}
    groups = {g["id"]: g for g in result["groups"]}
    base = groups[result["baseline"]]
    for r in rows:
        g = groups[r["group"]]
        if r["kind"] == "paired":
            d = np.subtract(g["values"], base["values"])  # same seeds, same order
            assert r["sd"] == pytest.approx(np.std(d, ddof=1), abs=1e-12)
        else:
            assert r["sd"] == pytest.approx(math.sqrt((np.var(g["values"], ddof=1) + np.var(base["values"], ddof=1)) / 2), abs=1e-12)
        for delta, n in zip((0.005, 0.01, 0.02, 0.05), r["seeds_needed"]):
            def power(n):
                df, nc = (n - 1, delta * math.sqrt(n) / r["sd"]) if r["kind"] == "paired" else (2 * n - 2, delta / (r["sd"] * math.sqrt(2 / n)))
                crit = stats.t.ppf(0.975, df)
                return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
            assert power(n) >= 0.8 and (n == 2 or power(n - 1) < 0.8)


def test_excluded_runs_are_named_with_their_reason(result):
    reasons = {e["run"]: e["reason"] for e in result["excluded"]}
    assert set(reasons) == {"bad", "waiting"}
    assert reasons["bad"].startswith("failed experiment")
    assert reasons["waiting"] == "queued experiment"


def test_every_exclusion_reason_and_a_reproducibility_failure(lab, tmp_path, capsys):
    """The real listing, edited the ways real ones go wrong: a replicate without its train metrics, one
    without its eval metrics, params edited in the workspace but not run, and a seed whose value changed."""
    from antispoof.compare import main

    shown = json.loads((lab.root / "shown.json").read_text())
    exps = {e["name"]: e["revs"][0]["data"] for base in shown for e in base.get("experiments") or []}
    del exps["b-42"]["metrics"]["metrics/train/r1.json"]
    del exps["c-100"]["metrics"]["metrics/eval/r2.json"]
    exps["a-r3"]["metrics"]["metrics/eval/r0.json"]["data"]["eval_r0"]["pooled"]["eer"] += 0.01
    next(b for b in shown if b["rev"] == "workspace")["data"]["params"]["params.yaml"]["data"]["seed"] = 43
    (tmp_path / "edited.json").write_text(json.dumps(shown))
    assert main(["--from-json", str(tmp_path / "edited.json"), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    reasons = {e["run"]: e["reason"] for e in out["excluded"]}
    assert set(reasons) == {"bad", "waiting", "workspace", "b-42", "c-100"}
    assert reasons["b-42"] == "replicate r1 has no effective seed in metrics/train/r1.json"
    assert reasons["c-100"] == "missing metric pooled.eer: no metrics/eval/r2.json"
    assert reasons["workspace"].startswith("results are not from its params: metrics/train/r0.json has effective seed 42, seed 43 gives 43")
    (warning,) = out["warnings"]
    assert "REPRODUCIBILITY FAILURE: effective seed 42" in warning and "run main" in warning and "run a-r3" in warning
    assert warning in captured.err  # loud: on stderr too, whatever the output format
    assert out["baseline_reason"] == "the baseline commit's group" and [g["runs"] for g in out["groups"]] == [["main", "a-r3"]]


def test_duplicate_seeds_count_once(result):
    dups = result["duplicates"]
    assert all(d["identical"] for d in dups) and not result["warnings"]
    # r0 and r1 of the baseline commit (seeds 42 and SeedSequence([42, 1])'s first word, 31 bits) are in
    # the workspace (listed first), again in main, and again in a-r3: each counted once
    r1 = int(np.random.SeedSequence([42, 1]).generate_state(1, dtype=np.uint32)[0]) & 0x7FFFFFFF
    assert sorted((d["seed"], *d["runs"]) for d in dups) == sorted(
        [(s, "workspace", run) for s in (42, r1) for run in ("main", "a-r3")])
    base = next(g for g in result["groups"] if g["id"] == result["baseline"])
    assert base["n"] == 3 and {42, r1} <= set(base["seeds"])


def test_chart_has_every_group(lab, result):
    svg = (lab.root / "chart.svg").read_text()
    assert svg.startswith("<svg") and "http" not in svg.split(">", 1)[1].replace("http://www.w3.org", "")
    for g in result["groups"]:
        assert g["id"] in svg


def test_text_md_csv_show_the_same_result(lab, result, capsys):
    text = saved(lab, capsys)[1]
    assert "Excluded runs" in text and "bad" in text and "queued experiment" in text
    for c in result["comparisons"]:
        assert c["verdict"] in text
    md = saved(lab, capsys, "--md")[1]
    assert "| model.lcnn.dropout | n | mean |" in md
    code, out, err = saved(lab, capsys, "--csv")
    assert code == 0 and "excluded bad: failed experiment" in err  # CSV has no room for them: stderr
    rows = list(csv.DictReader(out.splitlines()))
    by_id = {row["group"]: row for row in rows}
    for g in result["groups"]:
        assert float(by_id[g["id"]]["mean"]) == g["mean"]
    for c in result["comparisons"]:
        assert float(by_id[c["group"]]["p"]) == c["p"]


def test_baseline_selection_and_other_metrics(lab, capsys):
    out = json.loads(saved(lab, capsys, "--json", "--baseline", "c-100")[1])
    assert out["baseline"] == "model.lcnn.dropout=0.1"
    out = json.loads(saved(lab, capsys, "--json", "--baseline", "model.lcnn.dropout=0", "--metric", "clean.min_dcf",
                           "--exp", "main", "b-42")[1])
    assert out["baseline"] == "model.lcnn.dropout=0.0" and out["metric"] == "clean.min_dcf"
    assert [g["runs"] for g in out["groups"]] == [["b-42"], ["main"]] and out["excluded"] == []
    # n = 2 (main alone) against 3 shared-seed values: 2 shared seeds, no test
    (c,) = out["comparisons"]
    assert c["test"] is None and c["n_paired"] == 2 and c["verdict"].startswith("n < 3: no test")


def test_bad_input_one_line_exit_2(lab, tmp_path, capsys):
    cases = {
        ("--metric", "pooled.er"): r"closest: pooled\.eer",
        ("--baseline", "nothing-like-this"): r"--baseline nothing-like-this matches no group or run",
        ("--exp", "nope"): r"--exp nope: no such run",
    }
    for args, pattern in cases.items():
        code, out, err = saved(lab, capsys, *args)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    (tmp_path / "empty.json").write_text("[]")
    proc = compare(lab, "--from-json", str(tmp_path / "empty.json"), check=False)
    assert proc.returncode == 2 and "no experiments" in proc.stderr and len(proc.stderr.splitlines()) == 1
    (tmp_path / "plain").mkdir()
    proc = subprocess.run([str(BIN / "antispoof-compare")], cwd=tmp_path / "plain", capture_output=True, text=True)
    assert proc.returncode == 2 and "not a DVC repository" in proc.stderr and len(proc.stderr.splitlines()) == 1
