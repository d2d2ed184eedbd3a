"""Is B better than A beyond seed noise? Compare DVC experiments across their seeds.

Reads `dvc exp show --json` (the workspace, baseline commits and their experiments; same selection
flags), groups the runs by every parameter except `seed`, `replicates` and `runtime` (a group is one
configuration) and pools the replicates of a group's runs by effective seed (metrics/train/r<r>.json):
the same effective seed twice is the same run and counts once; if its values differ, that is a
reproducibility failure and is reported loudly, naming both runs.

Per group: the params that distinguish it from the others, n, mean, sample std, 95 % Student-t interval
of the mean, min, max. Each group is then compared with the baseline group (--baseline; default the
workspace's): difference of means (group - baseline) with its 95 % interval and p-value from a paired
t-test on per-seed differences when the two groups share at least 3 effective seeds (replicates of one
master seed share the batch order and, for the same architecture, the initial weights: pairing
removes most seed noise), else
Welch's t-test; a percentile bootstrap interval (9,999 resamples from np.random.default_rng(20240229));
P(improvement) = P(group < baseline) over seed pairs, ties counting one half; Holm's correction when
more than one group is compared; a verdict in plain words. Fewer than 3 values: no test.

Units: values are in the metric file's units (EER is a fraction); text and Markdown show EER in percent
(differences in EER points); --json and --csv keep file units, unrounded. Lower is better for every
metric of metrics/eval/r<r>.json.

Examples:
  antispoof-compare                                  # pooled EER, every experiment of HEAD
  antispoof-compare --metric mp3_24k.eer --power      # one condition; seeds needed for 0.5-5 EER points
  antispoof-compare -A --baseline augment.prob=0.15 --json > compare.json
  antispoof-compare --exp exp-a1b2c exp-d3e4f --plot compare.svg
"""
from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from antispoof import stats
from antispoof.errors import UserError
from antispoof.expshow import collect, eval_metric_names, parse_exp_show, run_exp_show

CONFIDENCE = 0.95
ALPHA = 0.05
MIN_TEST_N = 3  # fewer values than this: no test (a t-test on 2 seeds has 1 degree of freedom)
POWER_TARGET = 0.8
POWER_DELTAS = (0.005, 0.01, 0.02, 0.05)  # in file units: 0.5, 1, 2 and 5 EER points
EXCLUDED_PARAMS = ("seed", "replicates")  # and everything under runtime.


# ---------------------------------------------------------------------------------------------- groups

def group_key(params: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in params.items()
                        if k not in EXCLUDED_PARAMS and not k.startswith("runtime.")))


def _fmt_param(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def make_groups(runs: list) -> tuple[list[dict], list[dict], list[str]]:
    """Groups of runs with identical params (but seed, replicates, runtime), pooled by effective seed.
    Returns (groups, duplicates, warnings)."""
    by_key: dict[tuple, dict] = {}
    duplicates, warns = [], []
    for run in runs:
        key = group_key(run.params)
        g = by_key.setdefault(key, {"key": key, "runs": [], "run_kinds": [], "pool": {}})
        g["runs"].append(run.name)
        g["run_kinds"].append(run.kind)
        for seed, value in zip(run.seeds, run.values):
            if seed not in g["pool"]:
                g["pool"][seed] = (value, run.name)
                continue
            first_value, first_run = g["pool"][seed]
            dup = {"seed": seed, "runs": [first_run, run.name], "values": [first_value, value],
                   "identical": first_value == value}
            duplicates.append(dup)
            if first_value != value:
                warns.append(f"REPRODUCIBILITY FAILURE: effective seed {seed} gives {first_value!r} in run "
                             f"{first_run} but {value!r} in run {run.name} (same configuration); "
                             f"the first value is used")
    groups = list(by_key.values())
    all_keys = sorted({k for g in groups for k, _ in g["key"]})
    dicts = [dict(g["key"]) for g in groups]
    distinguishing = [k for k in all_keys if len({d.get(k) for d in dicts}) > 1]
    for g, d in zip(groups, dicts):
        g["params"] = {k: (json.loads(d[k]) if k in d else None) for k in distinguishing}
        g["id"] = ", ".join(f"{k}={_fmt_param(v)}" for k, v in g["params"].items()) or "all runs"
        seeds = sorted(g["pool"])
        g["seeds"], g["values"] = seeds, [g["pool"][s][0] for s in seeds]
        g["sources"] = [g["pool"][s][1] for s in seeds]
    return groups, duplicates, warns


def pick_baseline(groups: list[dict], runs: list, selector: str | None) -> tuple[dict, str]:
    """The baseline group and why: --baseline names a group id, a run, or key=value conditions."""
    if selector is None:
        for kind, why in (("workspace", "the workspace's group"), ("commit", "the baseline commit's group")):
            for g in groups:
                if kind in g["run_kinds"]:
                    return g, why
        return groups[0], "the first group"
    for g in groups:
        if selector == g["id"]:
            return g, "--baseline"
    hits = [g for g in groups if selector in g["runs"]]
    if not hits and len(selector) >= 4:
        names = {run.name for run in runs if run.rev.startswith(selector)}
        hits = [g for g in groups if names & set(g["runs"])]
    if not hits and "=" in selector:
        hits = [g for g in groups if _satisfies(dict(g["key"]), selector)]
    if len(hits) == 1:
        return hits[0], "--baseline"
    if len(hits) > 1:
        raise UserError(f"--baseline {selector} matches {len(hits)} groups ({'; '.join(g['id'] for g in hits)}): be more specific")
    raise UserError(f"--baseline {selector} matches no group or run (groups: {'; '.join(g['id'] for g in groups)}; "
                    f"runs: {', '.join(r.name for r in runs)})")


def _satisfies(key: dict, selector: str) -> bool:
    import yaml

    for cond in selector.split(","):
        name, _, text = cond.partition("=")
        name = name.strip()
        if name not in key:
            return False
        try:
            wanted = yaml.safe_load(text)
        except yaml.YAMLError:
            wanted = text
        have = json.loads(key[name])
        if have != wanted and str(have) != text.strip():
            return False
    return True


# ------------------------------------------------------------------------------------------ statistics

def describe(group: dict, metric: str) -> dict:
    """Summary of one group (file units, unrounded)."""
    s = stats.summarize(group["values"], CONFIDENCE)
    ci = None if s["ci_low"] is None else [s["ci_low"], s["ci_high"]]
    return {"id": group["id"], "params": group["params"], "runs": group["runs"], "seeds": group["seeds"],
            "values": group["values"], "sources": group["sources"], "n": s["n"], "mean": s["mean"],
            "std": s["std"], "ci": ci, "min": s["min"], "max": s["max"],
            "ci_crosses_bound": bool(ci) and stats.crosses_bounds(ci[0], ci[1], stats.metric_bounds(metric))}


def compare_pair(group: dict, base: dict) -> dict:
    """group vs baseline: paired on shared seeds when at least MIN_TEST_N, else Welch on all seeds."""
    shared = sorted(set(group["seeds"]) & set(base["seeds"]))
    g_of, b_of = dict(zip(group["seeds"], group["values"])), dict(zip(base["seeds"], base["values"]))
    out = {"group": group["id"], "baseline": base["id"], "test": None, "n_paired": len(shared),
           "seeds_paired": shared, "n_group": group["n"], "n_baseline": base["n"], "diff": None, "ci": None,
           "p": None, "p_holm": None, "bootstrap_ci": None, "p_improvement": None, "verdict": ""}
    paired = len(shared) >= MIN_TEST_N
    if paired:
        g, b = [g_of[s] for s in shared], [b_of[s] for s in shared]
    else:
        g, b = group["values"], base["values"]
    out["diff"] = float(np.mean(np.subtract(g, b))) if paired else float(np.mean(g) - np.mean(b))
    out["p_improvement"] = stats.prob_improvement(g, b, paired)
    if paired or min(len(g), len(b)) >= MIN_TEST_N:
        with warnings.catch_warnings():  # zero variance: scipy warns and returns NaN, reported as None
            warnings.simplefilter("ignore")
            test = stats.paired_test(g, b, CONFIDENCE) if paired else stats.welch_test(g, b, CONFIDENCE)
            out.update(test=test["test"], ci=test["ci"], p=test["p"])
            out["bootstrap_ci"] = stats.bootstrap_ci(g, b, paired, CONFIDENCE)
    return out


def power_rows(comparisons: list[dict], groups: list[dict], base: dict) -> list[dict]:
    """Seeds needed for each difference in POWER_DELTAS, from each comparison's observed spread: paired
    (std of per-seed differences, n = shared seeds) and unpaired (root mean square of the two groups'
    std, n = seeds per group). With a single group: unpaired from its own std."""
    by_id = {g["id"]: g for g in groups}
    rows = []
    pairs = [(by_id[c["group"]], c) for c in comparisons] or [(base, None)]
    for g, c in pairs:
        candidates = []
        if c and c["n_paired"] >= 2:
            g_of, b_of = dict(zip(g["seeds"], g["values"])), dict(zip(base["seeds"], base["values"]))
            diffs = [g_of[s] - b_of[s] for s in c["seeds_paired"]]
            candidates.append(("paired", float(np.std(diffs, ddof=1)), len(diffs)))
        if g["std"] is not None and base["std"] is not None:
            candidates.append(("unpaired", math.sqrt((g["std"] ** 2 + base["std"] ** 2) / 2), min(g["n"], base["n"])))
        for kind, sd, n_sd in candidates:
            needed = [stats.seeds_needed(d, sd, kind == "paired", ALPHA, POWER_TARGET) for d in POWER_DELTAS]
            rows.append({"group": g["id"], "baseline": base["id"], "kind": kind, "sd": sd, "n_sd": n_sd,
                         "seeds_needed": needed})
    return rows


def analyse(runs: list, excluded: list[dict], metric: str, baseline: str | None = None, power: bool = False) -> dict:
    """The whole comparison as a JSON-ready dict (file units, unrounded)."""
    if not runs:
        reasons = "; ".join(f"{e['run']}: {e['reason']}" for e in excluded) or "no runs"
        raise UserError(f"no experiment to compare has {metric} ({reasons})")
    raw_groups, duplicates, warns = make_groups(runs)
    base_raw, why = pick_baseline(raw_groups, runs, baseline)
    ordered = [base_raw] + [g for g in raw_groups if g is not base_raw]
    groups = [describe(g, metric) for g in ordered]
    base = groups[0]
    comparisons = [compare_pair(g, base) for g in groups[1:]]
    for c, p_holm in zip(comparisons, stats.holm([c["p"] for c in comparisons])):
        c["p_holm"] = p_holm
    family = sum(c["p"] is not None for c in comparisons)
    for c in comparisons:
        c["verdict"] = verdict(c, metric, family)
    scale, unit = display_units(metric)
    result = {
        "metric": metric, "file_units": "fraction" if scale == 100 else "metric units",
        "display": {"scale": scale, "unit": unit}, "lower_is_better": True, "confidence": CONFIDENCE,
        "baseline": base["id"], "baseline_reason": why,
        "bootstrap": {"method": "percentile", "resamples": stats.BOOTSTRAP_RESAMPLES,
                      "seed": stats.BOOTSTRAP_SEED, "generator": "numpy.random.default_rng"},
        "groups": groups, "comparisons": comparisons, "excluded": excluded,
        "duplicates": duplicates, "warnings": warns,
    }
    if power:
        result["power"] = {"alpha": ALPHA, "power": POWER_TARGET, "deltas": list(POWER_DELTAS),
                           "rows": power_rows(comparisons, groups, base)}
    return result


def display_units(metric: str) -> tuple[int, str]:
    """(scale, unit of differences) for text output: EER metrics in percent / EER points."""
    return (100, "EER points") if stats.is_eer(metric) else (1, "")


def verdict(c: dict, metric: str, family: int) -> str:
    scale, unit = display_units(metric)
    u = f" {unit}" if unit else ""
    if c["test"] is None:
        return f"n < {MIN_TEST_N}: no test (n = {c['n_group']} vs {c['n_baseline']}, {c['n_paired']} shared seeds)"
    if c["p"] is None:
        if c["diff"] == 0:
            return "no difference: identical on every seed"
        return f"no test: zero variance (difference {c['diff'] * scale:+.2f}{u} on every seed)"
    p = c["p_holm"] if family > 1 else c["p"]
    ptext = f"p = {c['p']:.2g}" + (f", Holm p = {c['p_holm']:.2g}" if family > 1 else "")
    lo, hi = c["ci"]
    if p < ALPHA:
        direction = "lower (better)" if c["diff"] < 0 else "higher (worse)"  # lower is better for every metric
        return f"{direction} by {abs(c['diff']) * scale:.2f} ± {(hi - lo) / 2 * scale:.2f}{u}, {ptext}"
    if lo <= 0 <= hi:
        return f"no evidence of a difference (CI spans 0, {ptext})"
    return f"no evidence of a difference after Holm correction ({ptext})"


# ---------------------------------------------------------------------------------------------- output

def _num(v, scale: float = 1, digits: int = 2) -> str:
    return "–" if v is None else f"{v * scale:.{digits}f}"


def _interval(ci, scale: float, digits: int = 2) -> str:
    return "–" if ci is None else f"[{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def _p(v) -> str:
    return "–" if v is None else f"{v:.2g}"


def tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of the text and Markdown outputs, in display units."""
    scale, unit = result["display"]["scale"], result["display"]["unit"]
    digits = 2 if scale == 100 else 4
    vunit = " (%)" if scale == 100 else ""
    pnames = list(result["groups"][0]["params"])
    rows = []
    for g in result["groups"]:
        mark = " †" if g["ci_crosses_bound"] else ""
        rows.append([*(_fmt_param(g["params"][k]) for k in pnames), str(g["n"]), _num(g["mean"], scale, digits),
                     _num(g["std"], scale, digits), _interval(g["ci"], scale, digits) + mark,
                     _num(g["min"], scale, digits), _num(g["max"], scale, digits),
                     ("baseline; " if g["id"] == result["baseline"] else "") + ", ".join(g["runs"])])
    out = [(f"Groups: {result['metric']}{vunit}, mean ± std of n seeds, {result['confidence']:.0%} t-interval",
            [*pnames, "n", "mean", "std", "95% CI", "min", "max", "runs"], rows)]
    if result["comparisons"]:
        rows = [[c["group"], c["test"] or "–", str(c["n_paired"]), _num(c["diff"], scale, digits),
                 _interval(c["ci"], scale, digits), _p(c["p"]), _p(c["p_holm"]),
                 _interval(c["bootstrap_ci"], scale, digits), _num(c["p_improvement"], 1, 2), c["verdict"]]
                for c in result["comparisons"]]
        out.append((f"Against baseline {result['baseline']} ({result['baseline_reason']}): "
                    f"diff = group − baseline{' in ' + unit if unit else ''}",
                    ["group", "test", "paired seeds", "diff", "95% CI", "p", "p Holm", "bootstrap 95% CI",
                     "P(improvement)", "verdict"], rows))
    if "power" in result:
        deltas = [f"{d * scale:g}" for d in result["power"]["deltas"]]
        rows = [[r["group"], r["kind"], _num(r["sd"], scale, digits), str(r["n_sd"]),
                 *("> 1e6" if n is None else str(n) for n in r["seeds_needed"])] for r in result["power"]["rows"]]
        out.append((f"Seeds needed (α = {result['power']['alpha']}, power {result['power']['power']}) to detect a "
                    f"difference of …{' ' + unit if unit else ''}",
                    ["group", "test", "observed std", "from n", *deltas], rows))
    if result["excluded"]:
        out.append(("Excluded runs", ["run", "reason"], [[e["run"], e["reason"]] for e in result["excluded"]]))
    return out


def notes(result: dict) -> list[str]:
    lines = list(result["warnings"])
    same = [d for d in result["duplicates"] if d["identical"]]
    if same:
        lines.append(f"{len(same)} seed(s) appear in more than one run with identical values and count once: "
                     + "; ".join(f"{d['seed']} ({' = '.join(d['runs'])})" for d in same))
    if any(g["ci_crosses_bound"] for g in result["groups"]):
        lines.append("† the interval reaches past the metric's possible values: shown as computed, not clipped")
    bs = result["bootstrap"]
    lines.append(f"Bootstrap: {bs['method']}, {bs['resamples']} resamples, numpy.random.default_rng({bs['seed']}). "
                 f"P(improvement) = P(group < baseline) over seed pairs (ties ½).")
    return lines


def render_text(result: dict) -> str:
    parts = []
    for title, headers, rows in tables(result):
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        parts.append("\n".join([title, fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows)]))
    return "\n\n".join(parts + ["\n".join(notes(result))]) + "\n"


def render_md(result: dict) -> str:
    parts = []
    for title, headers, rows in tables(result):
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        parts.append("\n".join([f"### {title}", "", "| " + " | ".join(map(esc, headers)) + " |",
                                "|" + "---|" * len(headers), *("| " + " | ".join(map(esc, r)) + " |" for r in rows)]))
    return "\n\n".join(parts + ["\n".join(f"- {n}" for n in notes(result))]) + "\n"


def render_csv(result: dict) -> str:
    """One row per group, its summary and its comparison with the baseline; file units, unrounded."""
    by_group = {c["group"]: c for c in result["comparisons"]}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    pnames = list(result["groups"][0]["params"])
    w.writerow(["group", *pnames, "is_baseline", "runs", "n", "mean", "std", "ci_low", "ci_high", "min", "max",
                "test", "n_paired", "diff", "diff_ci_low", "diff_ci_high", "p", "p_holm", "bootstrap_low",
                "bootstrap_high", "p_improvement", "verdict"])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for g in result["groups"]:
        c = by_group.get(g["id"], {})
        ci, dci, bci = g["ci"] or [None, None], c.get("ci") or [None, None], c.get("bootstrap_ci") or [None, None]
        w.writerow([g["id"], *(_fmt_param(g["params"][k]) for k in pnames), g["id"] == result["baseline"],
                    " ".join(g["runs"]), g["n"], g["mean"], blank(g["std"]), blank(ci[0]), blank(ci[1]), g["min"],
                    g["max"], blank(c.get("test")), blank(c.get("n_paired")), blank(c.get("diff")), blank(dci[0]),
                    blank(dci[1]), blank(c.get("p")), blank(c.get("p_holm")), blank(bci[0]), blank(bci[1]),
                    blank(c.get("p_improvement")), c.get("verdict", "")])
    return buf.getvalue()


def chart(result: dict) -> dict:
    """Vega-Lite: every seed as a point per group, the mean with its t-interval."""
    scale = result["display"]["scale"]
    title = f"{result['metric']}{' (%)' if scale == 100 else ''}"
    points = [{"group": g["id"], "seed": s, "run": r, "value": v * scale}
              for g in result["groups"] for s, v, r in zip(g["seeds"], g["values"], g["sources"])]
    means = [{"group": g["id"], "mean": g["mean"] * scale, "n": g["n"],
              "low": (g["ci"] or [g["mean"]] * 2)[0] * scale, "high": (g["ci"] or [g["mean"]] * 2)[1] * scale}
             for g in result["groups"]]
    order = [g["id"] for g in result["groups"]]
    y = {"field": "group", "type": "nominal", "sort": order, "title": None}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"{title}: seeds (points), mean and {result['confidence']:.0%} t-interval per group",
        "width": 480, "height": {"step": 36},
        "layer": [
            {"data": {"values": means}, "mark": {"type": "rule", "strokeWidth": 2, "color": "#444"},
             "encoding": {"y": y, "x": {"field": "low", "type": "quantitative", "title": title}, "x2": {"field": "high"}}},
            {"data": {"values": means}, "mark": {"type": "tick", "thickness": 3, "color": "#000"},
             "encoding": {"y": y, "x": {"field": "mean", "type": "quantitative"},
                          "tooltip": [{"field": "mean", "format": ".3f"}, {"field": "n"}]}},
            # seeds just above their group's interval, so that they never hide it
            {"data": {"values": points}, "mark": {"type": "point", "filled": True, "opacity": 0.6, "size": 60,
                                                  "color": "#1f77b4", "yOffset": -9},
             "encoding": {"y": {**y, "axis": {"labelLimit": 320}}, "x": {"field": "value", "type": "quantitative"},
                          "tooltip": [{"field": "seed"}, {"field": "run"}, {"field": "value", "format": ".3f"}]}},
        ],
    }


# ------------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="antispoof-compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metric", default="pooled.eer",
                   help="metric path inside metrics/eval/r<r>.json, e.g. clean.eer, mp3_24k.min_dcf (default: %(default)s)")
    p.add_argument("--baseline", help="baseline group: a group id, a run (experiment name, workspace, branch, "
                   "revision prefix) or key=value[,key=value] (default: the workspace's group)")
    p.add_argument("-A", "--all-commits", action="store_true", help="experiments of every commit (as dvc exp show -A)")
    p.add_argument("--rev", action="append", metavar="COMMIT", help="experiments derived from COMMIT (repeatable)")
    p.add_argument("-n", "--num", type=int, metavar="NUM", help="experiments of the last NUM commits from --rev")
    p.add_argument("--exp", nargs="+", metavar="NAME", help="only these runs (experiment names, workspace, branch names)")
    p.add_argument("--power", action="store_true",
                   help=f"seeds needed to detect differences of {', '.join(f'{d * 100:g}' for d in POWER_DELTAS)} "
                   f"EER points ({', '.join(map(str, POWER_DELTAS))} for other metrics) at alpha {ALPHA}, power {POWER_TARGET}")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", dest="format", const="json", help="JSON (file units, unrounded)")
    fmt.add_argument("--md", action="store_const", dest="format", const="md", help="Markdown tables")
    fmt.add_argument("--csv", action="store_const", dest="format", const="csv", help="CSV, one row per group (file units)")
    p.add_argument("--plot", metavar="FILE", help="chart of every seed per group, mean and CI (.svg, .png or .html; offline)")
    p.add_argument("--from-json", metavar="FILE", help="read a saved `dvc exp show --json` instead of running dvc")
    return p


def load_shown(args: argparse.Namespace) -> list:
    if args.from_json:
        if args.all_commits or args.rev or args.num is not None:
            raise UserError("--from-json reads a saved listing: -A/--rev/-n do not apply")
        path = Path(args.from_json)
        if not path.is_file():
            raise UserError(f"--from-json {path}: no such file")
        return parse_exp_show(path.read_text(encoding="utf-8"), str(path))
    return run_exp_show(args.all_commits, args.rev, args.num)


def check_metric(shown: list, metric: str) -> None:
    names = eval_metric_names(shown)
    if not names:
        raise UserError("no experiments: dvc exp show lists no run with metrics/eval/r<r>.json "
                        "(run `dvc repro` or `dvc exp run` first)")
    if metric not in names:
        close = difflib.get_close_matches(metric, sorted(names), n=4, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; e.g. {', '.join(sorted(names)[:4])}"
        raise UserError(f"--metric {metric}: no such metric in metrics/eval/r<r>.json{hint}")


def run_compare(args: argparse.Namespace) -> str:
    if args.plot and Path(args.plot).suffix.lower() not in (".svg", ".png", ".html"):
        raise UserError(f"--plot {args.plot}: the chart is written as .svg, .png or .html")
    shown = load_shown(args)
    check_metric(shown, args.metric)
    runs, excluded = collect(shown, args.metric, args.exp)
    result = analyse(runs, excluded, args.metric, args.baseline, args.power)
    for w in result["warnings"]:
        print(f"antispoof compare: warning: {w}", file=sys.stderr)
    if args.plot:
        from antispoof.vega import save_chart

        save_chart(chart(result), args.plot)
    if args.format == "json":
        return json.dumps(result, indent=2) + "\n"
    if args.format == "csv":
        for e in result["excluded"]:
            print(f"antispoof compare: excluded {e['run']}: {e['reason']}", file=sys.stderr)
        return render_csv(result)
    return render_md(result) if args.format == "md" else render_text(result)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sys.stdout.write(run_compare(args))
    except UserError as e:
        print(f"antispoof compare: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
