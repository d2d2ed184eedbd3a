"""The DVC output `data/augmented/`: codec variants packed into a few shard files plus an index.

Layout (all byte-deterministic: no timestamps, no absolute paths):

    data/augmented/shard-0000.s16 ... shard-<N-1>.s16   raw little-endian int16 samples, back to back
    data/augmented/index.csv    utt_id, split, condition, shard, offset, length, variant_key
                                (offset/length in samples; sorted by utt_id, condition)
    data/augmented/info.json    format version, sample rate, dtype, shard names, conditions per split

An utterance goes to shard ``int(sha256(utt_id)[:16], 16) % num_shards`` with all of its variants,
and within a shard entries are ordered by (utt_id, condition). So adding or removing one source file
changes the bytes of exactly one shard (plus the index), and DVC tracks num_shards + 2 files whatever
the dataset size. All num_shards files are always written (an empty shard is an empty file).

`AugmentedStore` reads it back with one positioned read (pread) per variant.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from antispoof.errors import DataError
from antispoof.repro import atomic_open, atomic_write_json

__all__ = ["AugmentedStore", "FORMAT_VERSION", "INDEX_COLUMNS", "shard_of", "shard_name", "write_shards"]

FORMAT_VERSION = 1
DTYPE = "<i2"
SCALE = 32768.0
INDEX_NAME = "index.csv"
INFO_NAME = "info.json"
INDEX_COLUMNS = ["utt_id", "split", "condition", "shard", "offset", "length", "variant_key"]
_SHARD_RE = re.compile(r"^shard-\d{4,}\.s16$")


def shard_of(utt_id: str, num_shards: int) -> int:
    """Stable shard of an utterance: depends only on its id and the shard count."""
    digest = hashlib.sha256(str(utt_id).encode("utf-8")).hexdigest()
    return int(digest[:16], 16) % int(num_shards)


def shard_name(index: int) -> str:
    return f"shard-{index:04d}.s16"


def write_shards(
    out_dir: str | os.PathLike,
    entries: Iterable[Mapping],
    load: Callable[[Mapping], np.ndarray],
    num_shards: int,
    sample_rate: int,
    conditions: Mapping[str, list[str]],
    extra_info: Mapping | None = None,
) -> list[dict]:
    """Pack variants into `out_dir` and write the index; return the index rows.

    `entries`: mappings with utt_id, split, condition, variant_key. `load(entry)` returns the entry's
    int16 samples (called once per entry, shard by shard, so memory stays at one variant).
    Every file is written atomically; stray shard files from an earlier layout are removed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_shard: dict[int, list[Mapping]] = {i: [] for i in range(num_shards)}
    seen = set()
    for e in entries:
        pair = (str(e["utt_id"]), str(e["condition"]))
        if pair in seen:
            raise ValueError(f"duplicate variant {pair}")
        seen.add(pair)
        by_shard[shard_of(pair[0], num_shards)].append(e)

    rows: list[dict] = []
    names = [shard_name(i) for i in range(num_shards)]
    for i in range(num_shards):
        items = sorted(by_shard[i], key=lambda e: (str(e["utt_id"]), str(e["condition"])))
        offset = 0
        with atomic_open(out / names[i], "wb") as f:
            for e in items:
                samples = np.ascontiguousarray(load(e), dtype=DTYPE)
                if samples.ndim != 1:
                    raise ValueError(f"variant {e['utt_id']}/{e['condition']} is not 1-D")
                f.write(samples.tobytes())
                rows.append({"utt_id": str(e["utt_id"]), "split": str(e["split"]), "condition": str(e["condition"]),
                             "shard": names[i], "offset": offset, "length": int(samples.shape[0]),
                             "variant_key": str(e["variant_key"])})
                offset += int(samples.shape[0])
    rows.sort(key=lambda r: (r["utt_id"], r["condition"]))

    with atomic_open(out / INDEX_NAME, "w") as f:
        f.write(",".join(INDEX_COLUMNS) + "\n")
        for r in rows:
            f.write(",".join(_csv_field(r[c]) for c in INDEX_COLUMNS) + "\n")
    info = {"format": "antispoof-augmented", "version": FORMAT_VERSION, "dtype": DTYPE, "scale": SCALE,
            "sample_rate": int(sample_rate), "num_shards": int(num_shards), "shards": names,
            "conditions": {k: list(v) for k, v in conditions.items()}}
    info.update(dict(extra_info or {}))
    atomic_write_json(out / INFO_NAME, info)

    keep = set(names) | {INDEX_NAME, INFO_NAME}
    for p in out.iterdir():
        if p.name not in keep and (_SHARD_RE.match(p.name) or (p.name.startswith(".") and p.name.endswith(".tmp"))):
            p.unlink()
    return rows


def _csv_field(value) -> str:
    s = str(value)
    if any(c in s for c in ',"\n\r'):
        s = '"' + s.replace('"', '""') + '"'
    return s


def _read_index(path: Path, chunk_rows: int = 200_000):
    """index.csv as arrays, read in chunks so that no column of Python strings for the whole index
    exists at once: utterance ids (UTF-8 bytes), condition and shard codes with their names, offsets
    and lengths (one entry per row)."""
    import pandas as pd

    try:
        header = pd.read_csv(path, nrows=0).columns
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    missing = [c for c in INDEX_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    utts, conds, shards, offsets, lengths = [], [], [], [], []
    names: dict[str, dict[str, int]] = {"condition": {}, "shard": {}}
    for chunk in pd.read_csv(path, usecols=["utt_id", "condition", "shard", "offset", "length"], chunksize=chunk_rows,
                             dtype={"utt_id": str, "condition": str, "shard": str}, keep_default_na=False):
        utts.append(np.char.encode(chunk["utt_id"].to_numpy(dtype=str), "utf-8"))
        for column, out in (("condition", conds), ("shard", shards)):
            codes, uniques = pd.factorize(chunk[column])
            table = names[column]
            out.append(np.array([table.setdefault(u, len(table)) for u in uniques], dtype=np.int32)[codes])
        offsets.append(chunk["offset"].to_numpy(dtype=np.int64))
        lengths.append(chunk["length"].to_numpy(dtype=np.int64))

    def joined(parts, dtype):
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return (joined(utts, "S1"), joined(conds, np.int32), list(names["condition"]), joined(shards, np.int32),
            list(names["shard"]), joined(offsets, np.int64), joined(lengths, np.int64))


class AugmentedStore:
    """Read-only access to `data/augmented/` (one pread per variant, so memory does not grow with the shards).

    The index is held as a few numpy arrays (≈ 20 bytes per variant plus the utterance ids once, found by
    binary search), not as Python objects per variant: a dict of tuples would take ≈ 0.5 GB at ASVspoof
    5's eval scale (680k utterances x conditions), and its refcounts would make forked loader workers
    copy it page by page. Safe to pass to DataLoader workers: shard files are opened lazily in each process.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        try:
            self.info = json.loads((self.dir / INFO_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{self.dir / INFO_NAME}: not found (run the augment stage first)") from None
        if self.info.get("format") != "antispoof-augmented" or self.info.get("version") != FORMAT_VERSION:
            raise DataError(f"{self.dir / INFO_NAME}: unsupported format {self.info.get('format')!r} "
                            f"version {self.info.get('version')!r}")
        self.sample_rate = int(self.info["sample_rate"])
        self._shards: list[str] = list(self.info["shards"])
        order = self._condition_order()
        utt, cond, cond_names, shard, shard_names, offset, length = _read_index(self.dir / INDEX_NAME)
        shard_pos = {name: i for i, name in enumerate(self._shards)}
        unknown = set(shard_names) - set(shard_pos)
        if unknown:
            raise DataError(f"{self.dir / INDEX_NAME}: refers to unknown shard files {sorted(unknown)}")
        # Conditions in params order; utterances sorted by their UTF-8 bytes (= by code point).
        self._conditions = sorted(cond_names, key=lambda c: (order.get(c, len(order)), c))
        self._condition_code = {c: i for i, c in enumerate(self._conditions)}
        cond = np.array([self._condition_code[c] for c in cond_names], dtype=np.int16)[cond]
        shard = np.array([shard_pos[n] for n in shard_names], dtype=np.int32)[shard]
        self._utts, utt_code = np.unique(utt, return_inverse=True)
        del utt
        rows = np.lexsort((cond, utt_code))  # by utterance, then condition: one run of rows per utterance
        self._first = np.searchsorted(utt_code[rows], np.arange(len(self._utts) + 1)).astype(np.int64)
        self._cond, self._shard, self._offset, self._length = cond[rows], shard[rows], offset[rows], length[rows]
        self._fds: dict[int, int] = {}

    @property
    def index(self):
        """The index as a DataFrame (read from index.csv on each access: the store keeps only arrays)."""
        import pandas as pd

        return pd.read_csv(self.dir / INDEX_NAME, dtype={"utt_id": str, "split": str, "condition": str,
                                                         "shard": str, "variant_key": str}, keep_default_na=False)

    def _condition_order(self) -> dict[str, int]:
        order: dict[str, int] = {}
        for split in ("train", "dev", "eval"):
            for c in self.info.get("conditions", {}).get(split, []):
                order.setdefault(c, len(order))
        return order

    def __len__(self) -> int:
        return len(self._cond)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fds"] = {}  # descriptors are per process (spawned loader workers open their own)
        return state

    def conditions(self, split: str | None = None) -> list[str]:
        """Condition names configured for `split` (train/dev/eval), or for any split, in params order."""
        conds = self.info.get("conditions", {})
        if split is None:
            return list(self._condition_order())
        if split not in conds:
            raise KeyError(f"unknown split {split!r}; known: {', '.join(conds)}")
        return list(conds[split])

    def _rows_of(self, utt_id: str) -> tuple[int, int]:
        """The index rows [start, stop) of one utterance (empty if it has none)."""
        key = str(utt_id).encode("utf-8")
        k = int(self._utts.searchsorted(key))
        if k == len(self._utts) or self._utts[k] != key:
            return 0, 0
        return int(self._first[k]), int(self._first[k + 1])

    def _row(self, utt_id: str, condition: str) -> int | None:
        code = self._condition_code.get(str(condition))
        start, stop = self._rows_of(utt_id)
        codes = self._cond[start:stop].tolist()  # a handful: one per stored condition
        return start + codes.index(code) if code in codes else None

    def has(self, utt_id: str, condition: str) -> bool:
        return self._row(utt_id, condition) is not None

    def variants_of(self, utt_id: str) -> list[str]:
        """Stored conditions of an utterance, in params order ([] if none)."""
        start, stop = self._rows_of(utt_id)
        return [self._conditions[c] for c in self._cond[start:stop].tolist()]

    def length(self, utt_id: str, condition: str) -> int:
        """Samples in one stored variant (from the index: nothing is read)."""
        return self._locate(utt_id, condition)[2]

    def lengths(self, utt_ids, condition: str) -> np.ndarray:
        """`length` of each utterance's variant under `condition`, -1 where it has none (vectorised:
        for a whole split at once)."""
        keys = np.array([str(u).encode("utf-8") for u in utt_ids], dtype=bytes)
        out = np.full(len(keys), -1, dtype=np.int64)
        code = self._condition_code.get(str(condition))
        if code is None or not len(keys) or not len(self._utts):
            return out
        k = np.minimum(np.searchsorted(self._utts, keys), len(self._utts) - 1)
        found = self._utts[k] == keys
        # Each utterance has at most one row per condition: the row of (k, code), if any.
        row_of_utt = np.full(len(self._utts), -1, dtype=np.int64)
        rows = np.flatnonzero(self._cond == code)
        row_of_utt[np.searchsorted(self._first, rows, side="right") - 1] = rows
        hit = np.where(found, row_of_utt[k], -1)
        out[hit >= 0] = self._length[hit[hit >= 0]]
        return out

    def _locate(self, utt_id: str, condition: str) -> tuple[int, int, int]:
        row = self._row(utt_id, condition)
        if row is None:
            raise KeyError(f"no variant {condition!r} of utterance {utt_id!r} in {self.dir}"
                           f" (stored: {', '.join(self.variants_of(utt_id)) or 'none'})")
        return int(self._shard[row]), int(self._offset[row]), int(self._length[row])

    def _fd(self, i: int) -> int:
        fd = self._fds.get(i)
        if fd is None:
            fd = self._fds[i] = os.open(self.dir / self._shards[i], os.O_RDONLY)
        return fd

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def get_int16(self, utt_id: str, condition: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The variant's samples [start:stop] (all by default) as int16, reading only those."""
        # One positioned read per variant rather than a memory map of the whole shard: pages a map has
        # touched count in the process's RSS until it is unmapped, which for a corpus's shards (tens of
        # GB at ASVspoof 5 scale) would make memory grow with the corpus. The page cache is shared anyway.
        shard, off, n = self._locate(utt_id, condition)
        start = min(start, n)
        stop = max(start, min(n if stop is None else stop, n))
        buf = bytearray(2 * (stop - start))
        got = os.preadv(self._fd(shard), [buf], 2 * (off + start)) if stop > start else 0
        if got != len(buf):
            raise DataError(f"{self.dir / self._shards[shard]}: truncated (index wants samples {off}..{off + n})")
        return np.frombuffer(buf, dtype=DTYPE)

    def get(self, utt_id: str, condition: str) -> np.ndarray:
        """The variant as float32 in [-1, 1) (int16 / 32768), as long as the source utterance."""
        return self.get_int16(utt_id, condition).astype(np.float32) / np.float32(SCALE)

    def choose(self, utt_id: str, rng: np.random.Generator, prob: float) -> str:
        """Pick the condition for one training sample: 'clean' with probability 1 - prob (or when the
        utterance has no variants), else one of its variants uniformly. Draw-for-draw deterministic
        given `rng` (e.g. antispoof.repro.sample_generator(seed, epoch, index)): always two draws."""
        u = float(rng.random())
        k = int(rng.integers(0, 1 << 30))
        variants = self.variants_of(utt_id)
        if not variants or u >= prob:
            return "clean"
        return variants[k % len(variants)]
