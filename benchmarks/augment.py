"""Codec round-trip speed: naive vs antispoof.codecs vs the codec-bound limit, one worker each.

    uv run python benchmarks/augment.py [--clips 32] [--reps 5] [--table-clips 16] [--table-reps 3]

The same set of 4-second 16 kHz mono clips is encoded and decoded three ways:
- naive: one ffmpeg process per clip and direction, WAV/encoded temp files (the common recipe);
- ours:  antispoof.codecs.encode_decode, many clips per ffmpeg process (one encoder per clip);
- limit: the clips concatenated into one long stream, encoded by one process and decoded by another
         (no per-clip cost at all: what the codec itself costs).
All three use the same encoder options (CodecSpec.options). By default the process (and so every
ffmpeg child) is pinned to one CPU, so "one worker" really means one core; --no-pin lifts that.
The codec delay calibration of `ours` (one short ffmpeg round trip per codec and process) is done
before timing: in a stage run it is paid once per codec, not per clip.

Prints a table per codec (median ms per clip) and ends with the headline line for MP3 32 kbit/s:
    augment: naive_ms_per_clip=<a> ours_ms_per_clip=<b> limit_ms_per_clip=<c> speedup_vs_naive=<a/b> ratio_to_limit=<b/c>
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from antispoof import codecs

SR = 16000
TABLE = ["mp3:32k", "m4a:32k", "opus16k:16k", "opus8k:8k", "vorbis:32k", "amrnb:12.2k", "amrwb:12.65k",
         "g722", "mulaw", "alaw",
         "bandlimit"]
HEADLINE = "mp3:32k"


def speechlike(n: int, seed: int) -> np.ndarray:
    """Pulse train (100-160 Hz, jittered) shaped by three formants, noise bursts, syllable envelope."""
    rng = np.random.default_rng(seed)
    exc = np.zeros(n)
    pos = 0
    while pos < n:
        exc[pos] = 1.0
        pos += int(SR / (100 + 60 * rng.random()))
    exc += 0.05 * rng.standard_normal(n)
    f = np.fft.rfftfreq(n, 1 / SR)
    resp = sum(1.0 / (1 + ((f - fc) / bw) ** 2) for fc, bw in ((600, 90), (1300, 110), (2600, 160)))
    y = np.fft.irfft(np.fft.rfft(exc) * resp, n)
    t = np.arange(n) / SR
    y *= 0.35 + 0.65 * np.abs(np.sin(2 * np.pi * 2.5 * t + rng.random()))
    return (0.4 * y / np.max(np.abs(y))).astype(np.float32)


def _ffmpeg(spec: codecs.CodecSpec, args: list[str]) -> None:
    subprocess.run([codecs.ffmpeg_exe(spec.info.build), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True, stdin=subprocess.DEVNULL)


def _opts(spec: codecs.CodecSpec) -> list[str]:
    out = []
    for k, v in spec.options.items():
        out += [f"-{k}", str(v)]
    return out


def naive(clips: list[np.ndarray], spec: codecs.CodecSpec) -> list[np.ndarray]:
    """One process per clip and direction, temp files on disk (the common recipe)."""
    import soundfile as sf

    outs = []
    ext = spec.options["f"]
    for clip in clips:
        with tempfile.TemporaryDirectory(prefix="naive-") as d:
            src, enc, dec = os.path.join(d, "in.wav"), os.path.join(d, f"enc.{ext}"), os.path.join(d, "dec.wav")
            sf.write(src, clip, SR, subtype="FLOAT")
            _ffmpeg(spec, ["-i", src, *_opts(spec), enc])
            _ffmpeg(spec, ["-f", spec.decode_options["f"], "-i", enc, "-ar", str(SR), "-ac", "1", "-c:a", "pcm_s16le", dec])
            outs.append(sf.read(dec, dtype="float32")[0])
    return outs


def ours(clips: list[np.ndarray], spec: codecs.CodecSpec, batch: int) -> list[np.ndarray]:
    out = []
    for i in range(0, len(clips), batch):
        out.extend(codecs.encode_decode(clips[i:i + batch], SR, spec))
    return out


def limit(clips: list[np.ndarray], spec: codecs.CodecSpec) -> np.ndarray:
    """The clips as one long stream: one encode process, one decode process."""
    d = tempfile.mkdtemp(prefix="limit-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    try:
        src, enc, dec = os.path.join(d, "in.f32"), os.path.join(d, f"enc.{spec.options['f']}"), os.path.join(d, "dec.raw")
        np.concatenate(clips).astype("<f4").tofile(src)
        _ffmpeg(spec, ["-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", src, *_opts(spec), enc])
        _ffmpeg(spec, ["-f", spec.decode_options["f"], "-c:a", spec.decode_options["c:a"], "-i", enc,
                 "-f", "s16le", "-ar", str(SR), "-ac", "1", dec])
        return np.fromfile(dec, dtype="<i2")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def measure(fn, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def bench(condition: str, clips: list[np.ndarray], reps: int, batch: int) -> dict:
    spec = codecs.parse_condition(condition, condition)
    codecs.codec_delay(spec, SR)  # one-time calibration, outside the timing
    n = len(clips)
    res = {}
    # interleave the methods rep by rep, so a noisy phase of the machine hits all three alike
    t = {"naive": [], "ours": [], "limit": []}
    for _ in range(reps):
        t["naive"] += measure(lambda: naive(clips, spec), 1)
        t["ours"] += measure(lambda: ours(clips, spec, batch), 1)
        t["limit"] += measure(lambda: limit(clips, spec), 1)
    for k, v in t.items():
        res[k] = 1000 * statistics.median(v) / n
        res[k + "_all"] = [round(1000 * x / n, 1) for x in v]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=32, help="clips for the MP3 headline (default %(default)s)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions for the headline (default %(default)s)")
    ap.add_argument("--table-clips", type=int, default=16, help="clips per codec in the table (default %(default)s)")
    ap.add_argument("--table-reps", type=int, default=3, help="repetitions per codec in the table (default %(default)s)")
    ap.add_argument("--batch", type=int, default=32, help="clips per ffmpeg process in `ours` (default %(default)s)")
    ap.add_argument("--codecs", default=",".join(TABLE), help="conditions for the table ('' to skip it)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    args = ap.parse_args(argv)

    pinned = "no"
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        pinned = f"cpu {cpu}"
    builds = ", ".join(f"{b} {codecs.ffmpeg_version(b)}" for b in codecs.BUILDS if codecs.build_installed(b))
    print(f"ffmpeg: {builds}; 4-s clips at {SR} Hz mono; batch {args.batch}; pinned: {pinned}")

    clips = [speechlike(4 * SR, i) for i in range(max(args.clips, args.table_clips))]
    table = [c for c in args.codecs.split(",") if c]
    missing = [c for c in table if not codecs.build_installed(codecs.CODECS[c.partition(":")[0]].build)]
    if missing:
        print(f"skipped (no ffmpeg binary with their encoder on this platform): {', '.join(missing)}")
        table = [c for c in table if c not in missing]
    if table:
        print(f"\nmedian ms per clip over {args.table_reps} reps of {args.table_clips} clips")
        print(f"{'condition':<14}{'naive':>9}{'ours':>9}{'limit':>9}{'speedup':>9}{'/limit':>8}")
        for cond in table:
            r = bench(cond, clips[:args.table_clips], args.table_reps, args.batch)
            print(f"{cond:<14}{r['naive']:9.1f}{r['ours']:9.1f}{r['limit']:9.1f}"
                  f"{r['naive'] / r['ours']:9.2f}{r['ours'] / r['limit']:8.2f}", flush=True)

    r = bench(HEADLINE, clips[:args.clips], args.reps, args.batch)
    print(f"\n{HEADLINE}: {args.reps} reps of {args.clips} clips, ms per clip: naive {r['naive_all']} "
          f"ours {r['ours_all']} limit {r['limit_all']}")
    print(f"augment: naive_ms_per_clip={r['naive']:.1f} ours_ms_per_clip={r['ours']:.1f} "
          f"limit_ms_per_clip={r['limit']:.1f} speedup_vs_naive={r['naive'] / r['ours']:.2f} "
          f"ratio_to_limit={r['ours'] / r['limit']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
