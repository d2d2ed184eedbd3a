"""Stage `evaluate`: score the eval split, clean and under every codec condition, with replicate r's model.

Scoring is deterministic: the full utterance (or a centre crop of `evaluate.crop_seconds`), never a
random crop, `evaluate.batch_size` utterances of equal input length per forward pass (1: one
utterance per pass), clips read by memory map from the decoded-audio store (audio_store.py). The score is the bona fide logit minus the spoof logit
(higher = more bona fide), a log-likelihood-ratio-like value as ASVspoof's actDCF and Cllr expect.

Calibration (`evaluate.calibration: logistic`): the clean dev split is scored too
(scores/r<r>/dev/clean.txt), a linear score -> LLR map is fitted on it by prior-weighted logistic
regression at the ASVspoof 5 operating point (antispoof.calibration), and applied to every eval score
(scores/r<r>/calibrated/<condition>.txt). Never fitted on eval.

Outputs: scores/r<r>/<condition>.txt (`utt_id score` per line, raw), metrics/eval/r<r>.json (EER, minDCF,
actDCF, Cllr and minCllr pooled over all conditions and per condition, plus actDCF and Cllr of the
calibrated scores (act_dcf_cal, cllr_cal); the dev split's metrics and the calibration's slope/offset;
EER per attack, and per codec condition of
the corpus itself where its protocol has one (ASVspoof 2021/5), on the unmodified audio), and for
`dvc plots` DET-curve points (plots/det/r<r>/<condition>.csv, probit axes) and score histograms per class
(plots/hist/r<r>/<condition>.csv).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from antispoof import calibration, metrics
from antispoof.allocator import retain_freed_memory
from antispoof.cli import run_stage
from antispoof.data import AUGMENTED, MANIFEST, SplitClips, VariantClips, load_split, read_manifest
from antispoof.errors import ParamError, UserError
from antispoof.model_io import load_state_dict_into, read_model_info
from antispoof.models import build_model, select_device
from antispoof.repro import atomic_write_json, atomic_write_text
from antispoof.repro.seeding import replicate_seed, seed_everything
from antispoof.shards import AugmentedStore
from antispoof.scoring import score_utterances
from antispoof.train import run_id_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicate", type=int, required=True, help="replicate index (one of params 'replicates')")


def load_model(r: int, params: dict) -> torch.nn.Module:
    """Replicate r's model; every bad model file is a UserError naming it (antispoof.model_io)."""
    model = load_state_dict_into(build_model(params["model"], params["data"]["sample_rate"]), r)
    return model.to(select_device(params["runtime"]["device"])).eval()


def check_fingerprint(r: int, params: dict) -> None:
    """Warn (or fail) when the model was trained under other params, data or code than the current."""
    info = read_model_info(r)
    expected = run_id_for(params, r)
    if info["run_fingerprint"] != expected:
        msg = (f"models/r{r}/model.json: run_fingerprint does not match the current params, data and code "
               "(the model was trained for another configuration)")
        if params["evaluate"]["on_fingerprint_mismatch"] == "fail":
            raise UserError(msg)
        warnings.warn(msg)


def eval_inputs(params: dict) -> tuple[pd.DataFrame, SplitClips, AugmentedStore | None, int | None]:
    """The eval split's rows and clean clips (read on access), the codec-variant store, and the crop
    length (or None)."""
    sr = params["data"]["sample_rate"]
    crop = None if params["evaluate"]["crop_seconds"] is None else int(round(params["evaluate"]["crop_seconds"] * sr))
    rows, clean = load_split(read_manifest(), "eval", params["data"]["root"], sr)
    if len(rows) == 0:
        raise UserError(f"{MANIFEST}: the eval split is empty")
    store = AugmentedStore(AUGMENTED) if params["augment"]["eval"] else None
    return rows, clean, store, crop


def eval_conditions(store: AugmentedStore | None) -> list[str]:
    return ["clean"] + list(store.conditions("eval")) if store else ["clean"]


def score_condition(model: torch.nn.Module, cond: str, rows: pd.DataFrame, clean: SplitClips,
                    store: AugmentedStore | None, crop: int | None, batch_size: int = 1,
                    num_workers: int = 0) -> tuple[list[str], np.ndarray]:
    """Scores of a split's utterances (`rows`, `clean`: from data.load_split) under one condition, in
    manifest order: `batch_size` clips per forward pass (evaluate.batch_size; equal input lengths
    only), read by `num_workers` loader processes (runtime.num_workers; no effect on the scores). A
    variant that failed with augment.on_error=skip is missing from the store: only what exists is scored."""
    if cond == "clean":
        ids, clips = list(rows["utt_id"]), clean
    else:
        ids = list(rows["utt_id"][store.lengths(rows["utt_id"], cond) >= 0])
        clips = VariantClips(store, ids, cond)
    return ids, score_utterances(model, clips, crop, batch_size, num_workers)


def write_scores(path: Path, utt_ids: list[str], scores: np.ndarray) -> None:
    # repr() of a float is the shortest string that round-trips: exact, and byte-stable.
    atomic_write_text(path, "".join(f"{u} {float(s)!r}\n" for u, s in zip(utt_ids, scores)))


def score_dev(model: torch.nn.Module, r: int, params: dict, crop: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw scores of the clean dev split (bona fide, spoof), written to scores/r<r>/dev/clean.txt; None
    when the dev split is empty and nothing needs it."""
    rows, audio = load_split(read_manifest(), "dev", params["data"]["root"], params["data"]["sample_rate"])
    if len(rows) == 0:
        if params["evaluate"]["calibration"] != "none":
            raise UserError(f"{MANIFEST}: the dev split is empty, but evaluate.calibration is "
                            f"{params['evaluate']['calibration']!r} and fits on it; set evaluate.calibration: none")
        return None
    ids, scores = score_condition(model, "clean", rows, audio, None, crop, params["evaluate"]["batch_size"],
                                  params["runtime"]["num_workers"])
    write_scores(Path(f"scores/r{r}/dev/clean.txt"), ids, scores)
    is_bona = (rows.set_index("utt_id").loc[ids, "label"] == "bonafide").to_numpy()
    return scores[is_bona], scores[~is_bona]


def fit_calibration(method: str, dev: tuple[np.ndarray, np.ndarray] | None) -> tuple[float, float] | None:
    """(slope, offset) of score -> LLR fitted on the dev scores, or None for evaluate.calibration: none."""
    if method == "none" or dev is None:
        return None
    calibration.require_both_classes(*dev, where=f"{MANIFEST} (dev split)")
    return calibration.fit_logistic(*dev)


def calibration_metrics(table: pd.DataFrame, cal: tuple[float, float] | None) -> dict[str, dict]:
    """minCllr (raw scores) and, with a calibration, actDCF and Cllr of the calibrated scores: pooled and
    per condition of `table` (columns score, label, condition)."""
    groups = [("pooled", table)] + [(c, table[table["condition"] == c]) for c in table["condition"].unique()]
    out = {}
    for name, part in groups:
        is_bona = (part["label"] == "bonafide").to_numpy()
        if is_bona.all() or not is_bona.any():
            continue
        scores = part["score"].to_numpy(dtype=np.float64)
        out[name] = {"min_cllr": calibration.min_cllr(scores[is_bona], scores[~is_bona])}
        if cal is not None:
            llr = calibration.apply(scores, *cal)
            out[name]["act_dcf_cal"] = metrics.act_dcf(llr[is_bona], llr[~is_bona])
            out[name]["cllr_cal"] = metrics.cllr(llr[is_bona], llr[~is_bona])
    return out


def body(args: argparse.Namespace, params: dict) -> None:
    r = args.replicate
    if r not in params["replicates"]:
        raise ParamError("replicates", f"--replicate {r} is not listed in replicates {params['replicates']}")
    seed_everything(replicate_seed(params["seed"], r), params["deterministic"], params["num_threads"])
    retain_freed_memory()  # batched scoring would page-fault its working set anew on every batch
    check_fingerprint(r, params)
    model = load_model(r, params)
    rows, clean, store, crop = eval_inputs(params)
    dev = score_dev(model, r, params, crop)
    cal = fit_calibration(params["evaluate"]["calibration"], dev)
    tables = []
    for cond in tqdm(eval_conditions(store), desc=f"evaluate r{r}", unit="condition", file=sys.stderr):
        ids, scores = score_condition(model, cond, rows, clean, store, crop, params["evaluate"]["batch_size"],
                                      params["runtime"]["num_workers"])
        write_scores(Path(f"scores/r{r}/{cond}.txt"), ids, scores)
        if cal is not None:
            write_scores(Path(f"scores/r{r}/calibrated/{cond}.txt"), ids, calibration.apply(scores, *cal))
        part = rows.set_index("utt_id").loc[ids, ["label", "attack", "codec"]].reset_index()
        part["score"], part["condition"] = scores, cond
        tables.append(part)
        bona, spoof = scores[part["label"] == "bonafide"], scores[part["label"] == "spoof"]
        det = metrics.det_plot_points(bona, spoof, max_points=params["evaluate"]["det_points"])
        atomic_write_text(f"plots/det/r{r}/{cond}.csv", det.to_csv(index=False, lineterminator="\n", float_format="%.6f"))
        hist = metrics.score_histogram(bona, spoof).pivot(index="bin_center", columns="label", values="count")
        atomic_write_text(f"plots/hist/r{r}/{cond}.csv", hist.reset_index().to_csv(index=False, lineterminator="\n", float_format="%.6f"))

    table = pd.concat(tables, ignore_index=True)
    result = metrics.breakdown(table, ["condition"])
    # Per attack on clean audio only: scores of different codec conditions are not on one scale.
    clean_part = table[table["condition"] == "clean"]
    by_attack = metrics.breakdown(clean_part, ["attack"])["by_attack"]
    # The corpus's own codec conditions (ASVspoof 2021 / 5 eval keys), on its unmodified audio.
    has_codecs = set(clean_part["codec"]) - {"-"}
    by_codec = metrics.breakdown(clean_part, ["codec"])["by_codec"] if has_codecs else {}
    extra = calibration_metrics(table, cal)
    dev_metrics = None
    if dev is not None and dev[0].size and dev[1].size:
        dev_metrics = {**metrics.compute_metrics(*dev), "min_cllr": calibration.min_cllr(*dev)}
    atomic_write_json(f"metrics/eval/r{r}.json",
                      {f"eval_r{r}": eval_metrics(result, by_attack, by_codec, extra, dev_metrics, cal)})
    pooled = result["pooled"]
    line = f"evaluate r{r}: pooled EER {100 * pooled['eer']:.3f}%  minDCF {pooled['min_dcf']:.5f}"
    if cal is not None and "clean" in extra:
        c = extra["clean"]
        line += (f"  clean actDCF {result['by_condition']['clean']['act_dcf']:.5f} -> {c['act_dcf_cal']:.5f} calibrated, "
                 f"Cllr {result['by_condition']['clean']['cllr']:.3f} -> {c['cllr_cal']:.3f} bits (min {c['min_cllr']:.3f})")
    print(line)


def eval_metrics(result: dict, by_attack: dict, by_codec: dict, extra: dict | None = None,
                 dev: dict | None = None, cal: tuple[float, float] | None = None) -> dict:
    """Flatten the breakdown into the metrics file: pooled, one block per condition (with minCllr and the
    calibrated actDCF/Cllr from `extra`), EER per attack, the dev split's metrics and the calibration."""
    keep = ("eer", "min_dcf", "act_dcf", "cllr")
    extra = extra or {}
    out = {"pooled": {k: round(result["pooled"][k], 6) for k in keep + ("n_bonafide", "n_spoof")}}
    out["pooled"].update({k: round(v, 6) for k, v in extra.get("pooled", {}).items()})
    for cond, m in result.get("by_condition", {}).items():
        out[cond] = {k: round(m[k], 6) for k in keep}
        out[cond].update({k: round(v, 6) for k, v in extra.get(cond, {}).items()})
    out["attack_eer"] = {a: round(m["eer"], 6) for a, m in by_attack.items()}
    if by_codec:
        out["corpus_codec_eer"] = {c: round(m["eer"], 6) for c, m in by_codec.items()}
    if dev is not None:
        out["dev"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in dev.items()}
    if cal is not None:
        out["calibration"] = {"slope": round(cal[0], 6), "offset": round(cal[1], 6)}
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate", __doc__, body, add_arguments, argv)


if __name__ == "__main__":
    raise SystemExit(main())
