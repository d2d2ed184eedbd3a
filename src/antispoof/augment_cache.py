"""Stage `augment`: make the codec variants of every utterance and pack them for DVC.

    uv run python -m antispoof.augment_cache [--params params.yaml]

Reads data/prepared/manifest.csv and params (augment.*, data.root, data.sample_rate,
runtime.num_workers). For each utterance of split S it makes the variants listed in augment.S
(train: augmentation pool, dev: as configured, eval: evaluation conditions).

Two layers:
1. the persistent variant cache ($ANTISPOOF_CACHE_DIR or ~/.cache/antispoof, see variant_cache.py),
   content-addressed by audio content + codec spec + ffmpeg version. A variant already there is never
   re-encoded: re-runs, added codecs, a second experiment and a run after SIGKILL only encode what is
   missing. Workers write every variant to it as soon as their ffmpeg batch is done.
2. the DVC output data/augmented/ (shards + index.csv + info.json, see shards.py) and
   metrics/augment.json (counts per split x condition, skipped variants), rebuilt from the cache.
   Both are byte-deterministic; run statistics (cache hits, encoded, timings) vary between runs, so they
   are printed (and returned to the caller) rather than written to tracked files.

Failures (unreadable audio, ffmpeg errors) are collected per file with the file name and the tail of
ffmpeg's stderr. With augment.on_error: fail the stage then fails with a summary (after caching all the
variants that did work); with skip it writes everything else and lists the skipped variants in the
metrics file.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from antispoof import codecs
from antispoof.audio_store import AudioStore, as_float32, audio_key
from antispoof.datasets import SPLITS, read_manifest
from antispoof.errors import DataError
from antispoof.params import pool_workers
from antispoof.repro import atomic_write_json, audio_hash
from antispoof.shards import write_shards
from antispoof.variant_cache import VariantCache, variant_key

NAME = "augment-cache"
DESCRIPTION = __doc__.split("\n\n")[0]
ERROR_TAIL = 600  # characters of an error message kept in metrics/augment.json

# ---------------------------------------------------------------------------------------------------
# worker side

_WORKER: dict = {}


def _init_worker(delays: dict, parent_pid: int | None, cache_root: str) -> None:
    codecs.seed_delays(delays)
    _WORKER.update(parent_pid=parent_pid, cache=VariantCache(cache_root), audio=AudioStore())


def _tail(text: str, n: int = ERROR_TAIL) -> str:
    text = " | ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())
    return text if len(text) <= n else "..." + text[-n:]


def process_batch(job: dict) -> list[tuple]:
    """Make (or find in the cache) every variant of a batch of utterances of one split.

    job: {split, sample_rate, root, utts: [(utt_id, rel_path, manifest sha256, native rate)], specs: [CodecSpec]}.
    Returns one tuple per (utterance, condition): (utt_id, split, condition, key|None, status, error)
    with status 'hit', 'encoded' or 'failed'.
    """
    parent = _WORKER.get("parent_pid")
    if parent is not None and os.getppid() != parent:  # the stage was killed: do not keep working
        os._exit(1)
    cache: VariantCache = _WORKER["cache"]
    sr, split, specs = job["sample_rate"], job["split"], job["specs"]
    out: list[tuple] = []
    loaded: list[tuple[str, np.ndarray, str]] = []
    for utt_id, rel, digest, native_rate in job["utts"]:
        try:  # clean audio from the decoded-audio store (decoded there first if missing)
            samples = as_float32(_WORKER["audio"].clip(audio_key(digest, native_rate, sr), os.path.join(job["root"], rel),
                                                       digest, sr, verify=True))
        except Exception as e:  # noqa: BLE001 - any unreadable file is a per-file failure
            msg = _tail(str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}")
            out.extend((utt_id, split, s.name, None, "failed", f"cannot load audio: {msg}") for s in specs)
            continue
        loaded.append((utt_id, samples, audio_hash(samples, sr)))

    for spec in specs:
        ffv = codecs.ffmpeg_version(spec.info.build)
        keys = [variant_key(ah, spec, ffv) for _, _, ah in loaded]
        misses = []
        for i, key in enumerate(keys):
            if cache.get(key) is not None:
                out.append((loaded[i][0], split, spec.name, key, "hit", ""))
            else:
                misses.append(i)
        if not misses:
            continue
        results = codecs.encode_decode_each([loaded[i][1] for i in misses], sr, spec)
        for i, res in zip(misses, results):
            utt_id = loaded[i][0]
            if isinstance(res, codecs.CodecError):
                out.append((utt_id, split, spec.name, None, "failed", f"{res.summary}: {_tail(res.stderr_tail)}"))
                continue
            cache.put(keys[i], res, {"condition": spec.name, "sample_rate": sr, "audio": loaded[i][2]})
            out.append((utt_id, split, spec.name, keys[i], "encoded", ""))
    return out


# ---------------------------------------------------------------------------------------------------
# stage

def _make_jobs(df, specs: dict, root: str, sr: int, batch_size: int) -> list[dict]:
    jobs = []
    for split in SPLITS:
        if not specs[split]:
            continue
        part = df[df["split"] == split].sort_values("utt_id", kind="stable")
        utts = list(zip(part["utt_id"], part["path"], part["sha256"], part["sample_rate"].astype(int)))
        for i in range(0, len(utts), batch_size):
            jobs.append({"split": split, "sample_rate": sr, "root": root, "utts": utts[i:i + batch_size],
                         "specs": specs[split]})
    return jobs


def _run_jobs(jobs: list[dict], workers: int, cache_root: str, total: int, progress: bool) -> list[tuple]:
    from tqdm import tqdm

    delays = codecs.known_delays()
    results: list[tuple] = []
    counts = {"hit": 0, "encoded": 0, "failed": 0}

    def account(rows: list[tuple], bar) -> None:
        results.extend(rows)
        for r in rows:
            counts[r[4]] += 1
        bar.set_postfix(counts, refresh=False)
        bar.update(len(rows))

    if workers <= 1 or len(jobs) <= 1:
        _init_worker(delays, None, cache_root)
        with tqdm(total=total, desc=NAME, unit="variant", mininterval=1.0, disable=not progress) as bar:
            for job in jobs:
                account(process_batch(job), bar)
        return results

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=_init_worker, initargs=(delays, os.getpid(), cache_root))
    try:
        with tqdm(total=total, desc=NAME, unit="variant", mininterval=1.0, disable=not progress) as bar:
            pending = set()
            queue = list(reversed(jobs))
            while queue or pending:  # keep at most 2 jobs per worker queued: a kill loses little
                while queue and len(pending) < 2 * workers:
                    pending.add(pool.submit(process_batch, queue.pop()))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    account(fut.result(), bar)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def _summary_of_failures(failed: list[tuple], paths: dict) -> str:
    lines = [f"{len(failed)} variant(s) failed (set augment.on_error: skip to continue without them):"]
    for utt, split, cond, _, _, err in failed[:20]:
        lines.append(f"  {paths.get(utt, utt)} [{utt}, {split}, {cond}]: {err}")
    if len(failed) > 20:
        lines.append(f"  ... and {len(failed) - 20} more")
    return "\n".join(lines)


def body(args: argparse.Namespace, params: dict) -> dict:
    aug = params["augment"]
    codecs.validate_augment_params(aug)
    specs = codecs.conditions_by_split(aug)
    sr = int(params["data"]["sample_rate"])
    root = str(params["data"]["root"])
    df = read_manifest(Path(args.manifest))
    workers = pool_workers(params)
    start = time.time()

    for spec in {s.name: s for split in SPLITS for s in specs[split]}.values():
        try:
            codecs.codec_delay(spec, sr)  # measured once here, handed to the workers
        except codecs.CodecError as e:
            raise DataError(f"codec {spec.condition}: {e.summary}: {_tail(e.stderr_tail)}") from None

    cache = VariantCache(args.cache_dir) if args.cache_dir else VariantCache()
    cache.sweep_temp()
    jobs = _make_jobs(df, specs, root, sr, max(1, int(args.batch_size)))
    total = sum(len(j["utts"]) * len(j["specs"]) for j in jobs)
    results = _run_jobs(jobs, workers, str(cache.root), total, progress=not args.no_progress)
    results.sort(key=lambda r: (r[0], r[2]))

    paths = dict(zip(df["utt_id"], df["path"]))
    failed = [r for r in results if r[4] == "failed"]
    stats = {"variants": len(results), "hits": sum(r[4] == "hit" for r in results),
             "encoded": sum(r[4] == "encoded" for r in results), "failed": len(failed), "workers": workers}
    if failed and aug["on_error"] != "skip":
        print(f"{NAME}: {stats['hits']} cache hits, {stats['encoded']} encoded, {stats['failed']} failed",
              file=sys.stderr)
        raise DataError(_summary_of_failures(failed, paths))

    ok = [{"utt_id": r[0], "split": r[1], "condition": r[2], "variant_key": r[3]} for r in results if r[4] != "failed"]
    job_of = {u[0]: j for j in jobs for u in j["utts"]}

    def load(entry: dict) -> np.ndarray:
        samples = cache.get(entry["variant_key"])
        if samples is None:  # removed or damaged since the worker wrote it: make it again
            spec = next(s for s in specs[entry["split"]] if s.name == entry["condition"])
            utt = next(u for u in job_of[entry["utt_id"]]["utts"] if u[0] == entry["utt_id"])
            job = dict(job_of[entry["utt_id"]], utts=[utt], specs=[spec])
            _init_worker(codecs.known_delays(), None, str(cache.root))
            row = process_batch(job)[0]
            samples = cache.get(row[3]) if row[4] != "failed" else None
            if samples is None:
                raise DataError(f"{paths[entry['utt_id']]}: variant {entry['condition']} could not be re-made: {row[5]}")
        return samples

    ffmpeg_versions = codecs.ffmpeg_versions([s for split in SPLITS for s in specs[split]])
    write_shards(args.out, ok, load, int(aug["num_shards"]), sr,
                 {split: [s.name for s in specs[split]] for split in SPLITS},
                 extra_info={"ffmpeg_versions": ffmpeg_versions, "pipeline_version": codecs.PIPELINE_VERSION})

    counts = {split: {s.name: 0 for s in specs[split]} for split in SPLITS}
    for r in ok:
        counts[r["split"]][r["condition"]] += 1
    metrics = {
        "num_utterances": {split: int((df["split"] == split).sum()) for split in SPLITS},
        "variants": counts,
        "num_variants": len(ok),
        "num_skipped": len(failed),
        "skipped": [{"utt_id": r[0], "path": paths.get(r[0], ""), "split": r[1], "condition": r[2], "error": r[5]}
                    for r in failed],
        "num_shards": int(aug["num_shards"]),
        "ffmpeg_versions": ffmpeg_versions,
    }
    atomic_write_json(args.metrics, metrics)
    stats["seconds"] = round(time.time() - start, 3)
    print(f"{NAME}: {stats['variants']} variants: {stats['hits']} cache hits, {stats['encoded']} encoded, "
          f"{stats['failed']} {'skipped' if failed else 'failed'}; {stats['workers']} workers, "
          f"{stats['seconds']:.1f} s; cache {cache.root}", file=sys.stderr)
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", default="data/prepared/manifest.csv", help="input manifest (default: %(default)s)")
    parser.add_argument("--out", default="data/augmented", help="output directory (default: %(default)s)")
    parser.add_argument("--metrics", default="metrics/augment.json", help="metrics file (default: %(default)s)")
    parser.add_argument("--cache-dir", default=None,
                        help="variant cache directory (default: $ANTISPOOF_CACHE_DIR/variants/v1)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="clips per ffmpeg process (speed only, never results; default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(argv: list[str] | None = None) -> int:
    from antispoof.cli import run_stage

    return run_stage(NAME, DESCRIPTION, body, add_arguments, argv)


if __name__ == "__main__":
    raise SystemExit(main())
