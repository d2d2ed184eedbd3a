"""Runs out of `dvc exp show --json`: which rows are usable results, and each one's per-replicate values.

A *run* is one row of `dvc exp show`: the workspace, a baseline commit, or an experiment. For each run
this module reads its params (every params file, flattened to dotted keys) and, for each replicate in
its `replicates` param, the chosen metric from `metrics/eval/r<r>.json` and the effective seed from
`metrics/train/r<r>.json` - all of which `dvc exp show --json` already carries, so no per-revision
`git show` is needed. A row that cannot be used is returned as an exclusion with its reason, never
dropped silently: failed, queued or running experiments (a failed one still shows its baseline's
metrics in `exp show`, so its state, not its metrics, decides), rows DVC could not read, replicates
without the metric or without an effective seed, and results that do not belong to the row's params
(an effective seed that the row's `seed` does not produce: params edited but not yet run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from antispoof.errors import UserError

EVAL_FILE, TRAIN_FILE = "metrics/eval/r{r}.json", "metrics/train/r{r}.json"


@dataclass
class Run:
    """One usable row: its name in `dvc exp show`, revision, flattened params and per-replicate results."""

    name: str
    rev: str
    kind: str  # workspace | commit | experiment
    params: dict
    replicates: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # effective seed of each replicate
    values: list[float] = field(default_factory=list)  # the metric of each replicate


def find_dvc_root(start: Path) -> Path:
    """The DVC project containing `start` (a directory with `.dvc/`), or a UserError."""
    for d in (start, *start.parents):
        if (d / ".dvc").is_dir():
            return d
    raise UserError(f"{start}: not a DVC repository (no .dvc directory here or above); run compare inside a DVC project")


def run_exp_show(all_commits: bool = False, revs: list[str] | None = None, num: int | None = None,
                 cwd: Path | None = None) -> list:
    """The parsed output of `dvc exp show --json` with the same selection flags."""
    find_dvc_root((cwd or Path.cwd()).resolve())
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"]
    if all_commits:
        cmd.append("--all-commits")
    for rev in revs or []:
        cmd += ["--rev", rev]
    if num is not None:
        cmd += ["--num", str(num)]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise UserError(f"dvc exp show failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return parse_exp_show(proc.stdout, "dvc exp show --json")


def parse_exp_show(text: str, source: str) -> list:
    try:
        shown = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{source}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(shown, list):
        raise UserError(f"{source}: not the output of `dvc exp show --json` (expected a list of rows)")
    return shown


def iter_rows(shown: list):
    """(name, rev, kind, state, row) for every row of `dvc exp show --json`, in its order."""
    for base in shown:
        rev = base.get("rev") or ""
        if rev == "workspace":
            yield "workspace", rev, "workspace", "success", base
        else:
            yield base.get("name") or rev[:7], rev, "commit", "success", base
        for exp in base.get("experiments") or []:
            head = (exp.get("revs") or [{}])[0]
            state = (exp.get("executor") or {}).get("state") or "success"
            name = exp.get("name") or head.get("name") or (head.get("rev") or "")[:7]
            yield name, head.get("rev") or "", "experiment", state, {**head, "executor": exp.get("executor")}


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def row_params(data: dict) -> dict | str:
    """Flattened params of a row (keys of params files other than params.yaml get a `file:` prefix), or
    the reason they cannot be read."""
    out = {}
    for file, entry in sorted((data.get("params") or {}).items()):
        if not isinstance(entry, dict) or "data" not in entry:
            return f"{file} unreadable: {_error_text(entry)}"
        out.update(flatten(entry["data"] or {}, "" if file == "params.yaml" else f"{file}:"))
    return out


def _error_text(entry) -> str:
    err = entry.get("error") if isinstance(entry, dict) else None
    if isinstance(err, dict):
        return err.get("msg") or err.get("type") or "error"
    return str(err or entry)


def _metrics_file(data: dict, path: str, top: str) -> dict | None:
    entry = (data.get("metrics") or {}).get(path)
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict):
        return None
    block = entry["data"].get(top)
    return block if isinstance(block, dict) else None


def eval_metric_names(shown: list) -> set[str]:
    """Every metric path (`pooled.eer`, `mp3_24k.min_dcf`, ...) in any row's per-replicate eval files."""
    names: set[str] = set()
    for _, _, _, _, row in iter_rows(shown):
        metrics = (row.get("data") or {}).get("metrics") or {}
        for path, entry in metrics.items():
            parts = Path(path).parts
            if len(parts) == 3 and parts[:2] == ("metrics", "eval") and isinstance(entry, dict):
                for block in (entry.get("data") or {}).values():
                    if isinstance(block, dict):
                        names.update(k for k, v in flatten(block).items() if _is_number(v))
    return names


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _lookup(block: dict, metric: str):
    value = block
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if _is_number(value) else None


def read_run(name: str, rev: str, kind: str, state: str, row: dict, metric: str) -> Run | str:
    """The run's per-replicate metric values and effective seeds, or the reason it is excluded."""
    if state != "success":
        log = ((row.get("executor") or {}).get("local") or {}).get("log")
        return f"{state} experiment" + (f" (log: {log})" if state == "failed" and log else "")
    if row.get("error"):
        return f"dvc could not read it: {_error_text(row)}"
    data = row.get("data")
    if not isinstance(data, dict):
        return "no data in dvc exp show"
    params = row_params(data)
    if isinstance(params, str):
        return params
    replicates = params.get("replicates")
    if not (isinstance(replicates, list) and replicates and all(isinstance(r, int) for r in replicates)):
        return "params.yaml has no list of replicates"
    run = Run(name, rev, kind, params, list(replicates))
    for r in replicates:
        ev = _metrics_file(data, EVAL_FILE.format(r=r), f"eval_r{r}")
        if ev is None:
            return f"missing metric {metric}: no {EVAL_FILE.format(r=r)}"
        value = _lookup(ev, metric)
        if value is None:
            return f"missing metric {metric} in {EVAL_FILE.format(r=r)}"
        tr = _metrics_file(data, TRAIN_FILE.format(r=r), f"train_r{r}")
        seed = tr.get("effective_seed") if tr else None
        if not isinstance(seed, int) or isinstance(seed, bool):
            return f"replicate r{r} has no effective seed in {TRAIN_FILE.format(r=r)}"
        stale = _stale(params.get("seed"), r, seed)
        if stale:
            return stale
        run.seeds.append(seed)
        run.values.append(float(value))
    return run


def _stale(master: object, r: int, effective: int) -> str | None:
    """Why results cannot be this row's (its seed does not produce this effective seed), else None."""
    from antispoof.repro.seeding import replicate_seed  # numpy only; imported here to keep --help fast

    if not isinstance(master, int) or isinstance(master, bool) or not 0 <= master <= 0xFFFFFFFF:
        return None  # no usable master seed to check against
    expected = replicate_seed(master, r)
    if expected == effective:
        return None
    return (f"results are not from its params: {TRAIN_FILE.format(r=r)} has effective seed {effective}, "
            f"seed {master} gives {expected} (params changed but not run?)")


def collect(shown: list, metric: str, names: list[str] | None = None) -> tuple[list[Run], list[dict]]:
    """Usable runs and excluded ones ({"run", "reason"}), in `dvc exp show` order. `names` restricts
    the rows to those named (experiment names, `workspace`, branch names or revision prefixes)."""
    rows = list(iter_rows(shown))
    if names:
        unknown = [n for n in names if not any(_matches(n, name, rev) for name, rev, *_ in rows)]
        if unknown:
            known = ", ".join(name for name, *_ in rows) or "none"
            raise UserError(f"--exp {' '.join(unknown)}: no such run in dvc exp show (runs: {known})")
        rows = [row for row in rows if any(_matches(n, row[0], row[1]) for n in names)]
    runs, excluded = [], []
    for name, rev, kind, state, row in rows:
        result = read_run(name, rev, kind, state, row, metric)
        if isinstance(result, Run):
            runs.append(result)
        else:
            excluded.append({"run": name, "reason": result})
    return runs, excluded


def _matches(wanted: str, name: str, rev: str) -> bool:
    return wanted == name or (len(wanted) >= 4 and rev.startswith(wanted))
