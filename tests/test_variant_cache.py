"""antispoof.variant_cache: content-addressed keys, verified entries, atomic and concurrent writes."""
from __future__ import annotations

import dataclasses
import multiprocessing
import os

import numpy as np
import pytest
import soundfile as sf

from antispoof import codecs
from antispoof.repro import audio_hash
from antispoof.variant_cache import VariantCache, variant_key

SR = 16000


def _tone(n: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


def test_key_changes_with_audio_spec_every_option_and_ffmpeg_version():
    spec = codecs.parse_condition("mp3:24k", "t")
    x = _tone()
    base = variant_key(audio_hash(x, SR), spec, "n9.0.2")
    assert len(base) == 64 and base == variant_key(audio_hash(x.copy(), SR), spec, "n9.0.2")
    y = x.copy()
    y[1234] += np.float32(1e-4)  # one sample differs
    assert variant_key(audio_hash(y, SR), spec, "n9.0.2") != base
    assert variant_key(audio_hash(x, 22050), spec, "n9.0.2") != base  # same samples, other rate
    assert variant_key(audio_hash(x, SR), spec, "n9.0.3") != base  # other ffmpeg
    assert variant_key(audio_hash(x, SR), codecs.parse_condition("mp3:32k", "t"), "n9.0.2") != base
    for opt in spec.options:  # changing any single encoder option changes the key
        changed = dataclasses.replace(spec, options={**spec.options, opt: f"{spec.options[opt]}x"})
        assert variant_key(audio_hash(x, SR), changed, "n9.0.2") != base, opt
    for opt in spec.decode_options:
        changed = dataclasses.replace(spec, decode_options={**spec.decode_options, opt: "other"})
        assert variant_key(audio_hash(x, SR), changed, "n9.0.2") != base, opt
    # default: the real ffmpeg version string
    assert variant_key(audio_hash(x, SR), spec) == variant_key(audio_hash(x, SR), spec, codecs.ffmpeg_version())


def test_renaming_a_file_keeps_the_key_changing_its_content_at_the_same_path_does_not(tmp_path):
    from antispoof.audio import load_audio

    spec = codecs.parse_condition("mulaw", "t")
    x = _tone(seed=1)
    sf.write(tmp_path / "a.wav", x, SR, subtype="PCM_16")
    k1 = variant_key(audio_hash(load_audio(tmp_path / "a.wav", SR), SR), spec)
    os.rename(tmp_path / "a.wav", tmp_path / "renamed.wav")
    assert variant_key(audio_hash(load_audio(tmp_path / "renamed.wav", SR), SR), spec) == k1
    sf.write(tmp_path / "renamed.wav", _tone(seed=2), SR, subtype="PCM_16")  # same path, new content
    assert variant_key(audio_hash(load_audio(tmp_path / "renamed.wav", SR), SR), spec) != k1


def test_put_get_roundtrip_and_layout(tmp_path):
    cache = VariantCache(tmp_path)
    key = "ab" + "0" * 62
    data = (np.arange(-500, 500) * 30).astype(np.int16)
    path = cache.put(key, data, {"condition": "mulaw"})
    assert path == tmp_path / "ab" / f"{key}.var" and key in cache
    np.testing.assert_array_equal(cache.get(key), data)
    assert cache.get("cd" + "0" * 62) is None
    assert [p.name for p in (tmp_path / "ab").iterdir()] == [f"{key}.var"]  # no temp files left
    with pytest.raises(ValueError):
        cache.path("../../etc/passwd")


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "other_key", "garbage"])
def test_damaged_entries_are_detected_and_removed(tmp_path, damage):
    cache = VariantCache(tmp_path)
    key, other = "12" + "3" * 62, "12" + "4" * 62
    data = np.arange(1000, dtype=np.int16)
    path = cache.put(key, data)
    blob = path.read_bytes()
    if damage == "flip_payload":
        blob = blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:]
    elif damage == "truncate":
        blob = blob[:-2]
    elif damage == "other_key":
        blob = VariantCache.encode_entry(other, data)
    else:
        blob = b"\0" * 100
    path.write_bytes(blob)
    assert cache.get(key) is None and cache.corrupt == 1
    assert not path.exists()  # removed, so the next run re-makes it
    cache.put(key, data)
    np.testing.assert_array_equal(cache.get(key), data)


N_KEYS = 6


def _key(i: int) -> str:
    return f"{i % 3:02x}" + f"{i:062x}"


def _data(i: int) -> np.ndarray:
    return np.full(300_000 + i, i - 3, dtype=np.int16)  # 600 KB entries: writes take a while


def _writer(root: str, rounds: int, queue) -> None:
    cache = VariantCache(root)
    for _ in range(rounds):
        for i in range(N_KEYS):
            cache.put(_key(i), _data(i))  # every writer writes the same bytes for a key
    queue.put(("writer", 0, cache.corrupt))


def _reader(root: str, seconds: float, queue) -> None:
    import time

    cache = VariantCache(root)
    bad, reads, end = 0, 0, time.time() + seconds
    while time.time() < end:
        for i in range(N_KEYS):
            got = cache.get(_key(i))
            reads += 1
            if got is None or not np.array_equal(got, _data(i)):
                bad += 1
    queue.put(("reader", bad, cache.corrupt))


def test_concurrent_writers_and_readers_never_see_a_partial_entry(tmp_path):
    cache = VariantCache(tmp_path)
    for i in range(N_KEYS):
        cache.put(_key(i), _data(i))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 12, queue)) for _ in range(2)]
    procs.append(ctx.Process(target=_reader, args=(str(tmp_path), 1.5, queue)))
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # the reader never found an entry missing, damaged or different while two writers rewrote them
    assert results == [("reader", 0, 0), ("writer", 0, 0), ("writer", 0, 0)]
    for i in range(N_KEYS):
        np.testing.assert_array_equal(cache.get(_key(i)), _data(i))
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_sweep_removes_only_old_temp_files(tmp_path):
    cache = VariantCache(tmp_path)
    (tmp_path / "aa").mkdir()
    old, new = tmp_path / "aa" / ".x.var.1.tmp", tmp_path / "aa" / ".y.var.2.tmp"
    old.write_bytes(b"partial")
    new.write_bytes(b"partial")
    os.utime(old, (1, 1))
    assert cache.sweep_temp(older_than=3600) == 1
    assert not old.exists() and new.exists()
