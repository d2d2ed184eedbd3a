"""antispoof.shards: packing, stable shard assignment, determinism and the memory-mapped reader."""
from __future__ import annotations

import hashlib
import pickle
from collections import Counter

import numpy as np
import pytest

from antispoof.errors import DataError
from antispoof.shards import AugmentedStore, shard_of, write_shards

CONDS = {"train": ["mp3_24k", "mulaw"], "dev": [], "eval": ["mp3_24k", "amrnb_6.7k"]}


def _samples(utt: str, cond: str) -> np.ndarray:
    seed = int(hashlib.sha256(f"{utt}/{cond}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, size=int(rng.integers(50, 400)), dtype=np.int16)


def _entries(utts: list[str]) -> list[dict]:
    out = []
    for u in utts:
        split = "eval" if u.startswith("E") else "train"
        for c in CONDS[split]:
            out.append({"utt_id": u, "split": split, "condition": c, "variant_key": f"k-{u}-{c}"})
    return out


def _write(d, utts, num_shards=8, order=None):
    entries = _entries(utts)
    if order is not None:
        entries = [entries[i] for i in order]
    return write_shards(d, entries, lambda e: _samples(e["utt_id"], e["condition"]), num_shards, 16000, CONDS)


def _files(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


UTTS = [f"T{i:04d}" for i in range(120)] + [f"E{i:04d}" for i in range(60)]


def test_roundtrip_through_the_memory_mapped_store(tmp_path):
    _write(tmp_path, UTTS)
    store = AugmentedStore(tmp_path)
    assert len(store) == 180 * 2
    assert store.conditions("train") == ["mp3_24k", "mulaw"] and store.conditions("dev") == []
    assert store.conditions() == ["mp3_24k", "mulaw", "amrnb_6.7k"]
    assert store.variants_of("T0003") == ["mp3_24k", "mulaw"]
    assert store.variants_of("E0003") == ["mp3_24k", "amrnb_6.7k"] and store.variants_of("nobody") == []
    assert store.has("E0001", "amrnb_6.7k") and not store.has("T0001", "amrnb_6.7k")
    for u in ("T0000", "T0119", "E0042"):
        for c in store.variants_of(u):
            ref = _samples(u, c)
            np.testing.assert_array_equal(store.get_int16(u, c), ref)
            got = store.get(u, c)
            assert got.dtype == np.float32 and got.flags.writeable
            np.testing.assert_array_equal(got, ref.astype(np.float32) / 32768)
    with pytest.raises(KeyError, match="stored: mp3_24k, mulaw"):
        store.get("T0001", "amrnb_6.7k")
    # picklable for DataLoader workers (maps are reopened lazily)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.get_int16("E0042", "mp3_24k"), _samples("E0042", "mp3_24k"))
    idx = (tmp_path / "index.csv").read_text().splitlines()
    assert idx[0] == "utt_id,split,condition,shard,offset,length,variant_key"


def test_output_is_byte_deterministic_whatever_the_input_order(tmp_path):
    _write(tmp_path / "a", UTTS)
    _write(tmp_path / "b", UTTS, order=list(np.random.default_rng(1).permutation(len(_entries(UTTS)))))
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_adding_or_removing_one_source_rewrites_exactly_one_shard(tmp_path):
    _write(tmp_path, UTTS)
    before = _files(tmp_path)
    assert len(before) == 8 + 2  # shards + index.csv + info.json, whatever the number of variants
    _write(tmp_path, UTTS + ["T9999"])
    added = _files(tmp_path)
    changed = {n for n in before if n.startswith("shard-") and before[n] != added[n]}
    assert changed == {f"shard-{shard_of('T9999', 8):04d}.s16"}
    _write(tmp_path, [u for u in UTTS if u != "E0007"])
    removed = _files(tmp_path)
    changed = {n for n in before if n.startswith("shard-") and before[n] != removed[n]}
    assert changed == {f"shard-{shard_of('E0007', 8):04d}.s16"}


def test_asvspoof5_scale_keeps_few_evenly_filled_shards():
    n_shards = 256
    counts = Counter(shard_of(f"T_{i:010d}", n_shards) for i in range(182_357))
    assert len(counts) == n_shards
    mean = 182_357 / n_shards
    assert max(counts.values()) < 1.15 * mean and min(counts.values()) > 0.85 * mean
    assert shard_of("T_0000000000", 256) == shard_of("T_0000000000", 256)


def test_fewer_shards_removes_stale_files_and_empty_shards_are_readable(tmp_path):
    _write(tmp_path, UTTS, num_shards=8)
    _write(tmp_path, ["T0001"], num_shards=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["index.csv", "info.json", "shard-0000.s16", "shard-0001.s16", "shard-0002.s16"]
    store = AugmentedStore(tmp_path)
    assert len(store) == 2 and store.variants_of("T0001") == ["mp3_24k", "mulaw"]
    np.testing.assert_array_equal(store.get_int16("T0001", "mulaw"), _samples("T0001", "mulaw"))


def test_choose_is_a_pure_function_of_the_generator(tmp_path):
    _write(tmp_path, UTTS)
    store = AugmentedStore(tmp_path)
    picks = [store.choose("T0005", np.random.default_rng(i), 0.5) for i in range(400)]
    assert picks == [store.choose("T0005", np.random.default_rng(i), 0.5) for i in range(400)]
    c = Counter(picks)
    assert set(c) == {"clean", "mp3_24k", "mulaw"} and 150 < c["clean"] < 250 and 60 < c["mulaw"] < 140
    assert {store.choose("T0005", np.random.default_rng(i), 0.0) for i in range(50)} == {"clean"}
    assert "clean" not in {store.choose("T0005", np.random.default_rng(i), 1.0) for i in range(50)}
    assert store.choose("nobody", np.random.default_rng(0), 1.0) == "clean"


def test_missing_or_truncated_output_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="run the augment stage"):
        AugmentedStore(tmp_path)
    _write(tmp_path, UTTS)
    store = AugmentedStore(tmp_path)
    shard = tmp_path / f"shard-{shard_of('T0000', 8):04d}.s16"
    shard.write_bytes(b"")
    with pytest.raises(DataError, match="truncated"):
        AugmentedStore(tmp_path).get("T0000", "mulaw")
    assert store is not None


def test_lengths_of_a_whole_split_at_once_and_reads_of_part_of_a_variant(tmp_path):
    _write(tmp_path, UTTS)
    store = AugmentedStore(tmp_path)
    ids = ["E0003", "nobody", "T0007", "E0059", "T0007"]
    for cond in ("mp3_24k", "amrnb_6.7k", "mulaw", "unknown"):
        expected = [len(_samples(u, cond)) if u in UTTS and cond in CONDS["eval" if u[0] == "E" else "train"] else -1
                    for u in ids]
        assert store.lengths(ids, cond).tolist() == expected
        assert [store.length(u, cond) if store.has(u, cond) else -1 for u in ids] == expected
    assert store.lengths([], "mulaw").tolist() == []
    full = _samples("E0003", "mp3_24k")
    for start, stop in ((0, None), (5, 17), (40, 10**6), (10**6, None)):
        np.testing.assert_array_equal(store.get_int16("E0003", "mp3_24k", start, stop), full[start:stop])


def test_the_index_costs_tens_of_bytes_per_variant(tmp_path):
    """ASVspoof 5's eval split under 4 codec conditions is 2.7M variants: the index must not hold Python
    objects per variant (a dict of tuples took ~360 bytes each, ~1 GB)."""
    import tracemalloc

    conds = {"train": [], "dev": [], "eval": ["mp3_24k", "mulaw"]}
    one = np.zeros(1, dtype=np.int16)
    entries = ({"utt_id": f"E{i:06d}_ü", "split": "eval", "condition": c, "variant_key": "ab" * 32}
               for i in range(15_000) for c in conds["eval"])
    write_shards(tmp_path, entries, lambda e: one, 4, 16000, conds)
    tracemalloc.start()
    try:
        store = AugmentedStore(tmp_path)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store) == 30_000 and held / len(store) < 64, held / len(store)
    assert store.variants_of("E014999_ü") == ["mp3_24k", "mulaw"] and store.length("E000000_ü", "mulaw") == 1
