"""Corpus readers: one table of utterances for every supported source, and the audio manifest.

`read_protocol(data, repo_root)` returns one row per utterance with the columns `COLUMNS`:

    utt_id   unique id (the corpus' own id, else the path without its extension)
    path     file path relative to data.root, '/' separators
    label    bonafide | spoof
    split    train | dev | eval
    speaker  speaker id (or the utt_id when the corpus has none: each file is its own speaker)
    attack   attack/system id; "bonafide" for bona fide rows, "-" when unknown
    codec    codec condition, "-" for none/unknown ("<codec>:<qualifier>" when the corpus has one)

`build_manifest` adds duration, native sample_rate, channels and sha256 (the content hash of the
decoded samples, see `antispoof.repro.audio_hash`). Both are sorted by (split, utt_id) and depend
only on the files' contents and the params, never on the order of directory listings.

Split policy: corpora with their own splits keep them (ASVspoof 2019 LA, ASVspoof 5, a csv with a
complete `split` column, the synthetic set). Single-split corpora (ASVspoof 2021, In-the-Wild) are
all `eval`. A csv without split, the folder source, and any source with `data.resplit: true` get a
speaker-disjoint split from `data.seed` and `data.split_ratios` (see `speaker_disjoint_split`).
Layouts and protocol formats follow /work/shared/reference/asvspoof.md; user docs: docs/datasets.md.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from antispoof.errors import DataError, ParamError

__all__ = [
    "AUDIO_EXTENSIONS", "COLUMNS", "LABELS", "MANIFEST", "MANIFEST_COLUMNS", "SOURCES", "SPLITS",
    "build_manifest", "dataset_root", "normalize_label", "protocol_files",
    "read_protocol", "speaker_disjoint_split", "validate_data_params",
]

SOURCES = ("synthetic", "csv", "folder", "asvspoof2019", "asvspoof2021", "asvspoof5", "in_the_wild")
LABELS = ("bonafide", "spoof")
SPLITS = ("train", "dev", "eval")
COLUMNS = ["utt_id", "path", "label", "split", "speaker", "attack", "codec"]
MANIFEST_COLUMNS = COLUMNS + ["duration", "sample_rate", "channels", "sha256"]
MANIFEST = Path("data/prepared/manifest.csv")  # written by the prepare stage (dvc.yaml)
AUDIO_EXTENSIONS = (".wav", ".flac")
TRACKS_2021 = ("LA", "DF")

# Accepted spellings (compared case-insensitively). In-the-Wild writes "bona-fide".
LABEL_ALIASES = {
    "bonafide": "bonafide", "bona-fide": "bonafide", "bona_fide": "bonafide", "bona fide": "bonafide",
    "genuine": "bonafide", "real": "bonafide",
    "spoof": "spoof", "spoofed": "spoof", "fake": "spoof",
}
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "dev", "development": "dev", "val": "dev", "valid": "dev", "validation": "dev",
    "eval": "eval", "evaluation": "eval", "test": "eval",
}
_NONE_CODECS = {"", "-", "none", "nocodec"}

# ASVspoof file names (reference/asvspoof.md).
_2019_PROTOCOLS = {
    "train": "ASVspoof2019.LA.cm.train.trn.txt",
    "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
    "eval": "ASVspoof2019.LA.cm.eval.trl.txt",
}
_2019_COLS = "SPEAKER UTT - SYSTEM KEY".split()
_2021_COLS = {
    "LA": "SPEAKER UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET".split(),
    "DF": ("SPEAKER UTT COMPRESSION SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR "
           "LANGUAGE").split(),
}
_5_PROTOCOLS = {
    "train": ("ASVspoof5.train.tsv", "flac_T"),
    "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D"),
    "eval": ("ASVspoof5.eval.track_1.tsv", "flac_E_eval"),
}
_5_COLS = "SPEAKER UTT GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK KEY TMP".split()
_5_PROTOCOL_DIRS = ("", "ASVspoof5_protocols")


# --------------------------------------------------------------------------------------------------
# params

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_ratios(ratios) -> dict[str, float]:
    key = "data.split_ratios"
    if not isinstance(ratios, dict):
        raise ParamError(key, f"must be a mapping with keys {', '.join(SPLITS)}, got {ratios!r}")
    if set(ratios) != set(SPLITS):
        raise ParamError(key, f"keys must be exactly {', '.join(SPLITS)}, got {', '.join(map(str, ratios))}")
    for s in SPLITS:
        if not _is_number(ratios[s]) or ratios[s] < 0:
            raise ParamError(f"{key}.{s}", f"must be a number >= 0, got {ratios[s]!r}")
    total = sum(float(ratios[s]) for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise ParamError(key, f"must sum to 1, got {total:g}")
    return {s: float(ratios[s]) for s in SPLITS}


def validate_data_params(data) -> None:
    """Check the `data` section of params.yaml; raises ParamError("data.<key>", ...) on a problem."""
    if not isinstance(data, dict):
        raise ParamError("data", f"must be a mapping, got {type(data).__name__}")
    source = data.get("source")
    if source not in SOURCES:
        raise ParamError("data.source", f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    root = data.get("root")
    if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
        raise ParamError("data.root", "required: the dataset root directory (relative to the repository or absolute)")
    if source == "csv":
        manifest = data.get("manifest")
        if not isinstance(manifest, (str, os.PathLike)) or not str(manifest).strip():
            raise ParamError("data.manifest", "required when data.source is csv: path of the CSV, relative to the repository")
    if source == "asvspoof2021":
        track = data.get("track")
        if track not in TRACKS_2021:
            raise ParamError("data.track", f"required when data.source is asvspoof2021: one of LA, DF (got {track!r})")
        subset = data.get("subset", "eval")
        if not isinstance(subset, str) or not subset.strip():
            raise ParamError("data.subset", f"must be a SUBSET value of the 2021 keys (eval, progress, hidden) or 'all', got {subset!r}")
    if "seed" in data and not _is_int(data["seed"]):
        raise ParamError("data.seed", f"must be an integer, got {data['seed']!r}")
    if "sample_rate" in data and (not _is_int(data["sample_rate"]) or data["sample_rate"] <= 0):
        raise ParamError("data.sample_rate", f"must be a positive integer, got {data['sample_rate']!r}")
    if data.get("split_ratios") is not None:
        _check_ratios(data["split_ratios"])
    if "resplit" in data and not isinstance(data["resplit"], bool):
        raise ParamError("data.resplit", f"must be true or false, got {data['resplit']!r}")
    if data.get("resplit"):
        _split_params(data, "data.resplit is true")


def _split_params(data: dict, why: str) -> tuple[dict[str, float], int]:
    if data.get("split_ratios") is None:
        raise ParamError("data.split_ratios", f"required because {why}")
    if not _is_int(data.get("seed")):
        raise ParamError("data.seed", f"an integer is required because {why}, got {data.get('seed')!r}")
    return _check_ratios(data["split_ratios"]), data["seed"]


def dataset_root(data: dict, repo_root: Path) -> Path:
    """data.root as a path (relative roots are relative to repo_root; '~' is expanded). Not resolved."""
    root = Path(os.path.expanduser(str(data["root"])))
    if not root.is_absolute():
        root = Path(repo_root) / root
    if not root.is_dir():
        raise ParamError("data.root", f"dataset root is not a directory: {root}")
    return root


# --------------------------------------------------------------------------------------------------
# row helpers

def normalize_label(value: str, where: str) -> str:
    """Map a label spelling to bonafide/spoof, or raise DataError naming `where` and the allowed values."""
    label = LABEL_ALIASES.get(value.strip().lower())
    if label is None:
        allowed = ", ".join(sorted(LABEL_ALIASES))
        raise DataError(f"{where}: unknown label {value!r}; allowed: {allowed}")
    return label


def _normalize_split(value: str, where: str) -> str:
    split = SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise DataError(f"{where}: unknown split {value!r}; allowed: {', '.join(sorted(SPLIT_ALIASES))}")
    return split


def _clean_relpath(raw: str, where: str) -> str:
    """A path relative to data.root with '/' separators; rejects absolute paths and '..'."""
    raw = raw.strip()
    if not raw:
        raise DataError(f"{where}: empty path")
    if "\\" in raw:
        raise DataError(f"{where}: path {raw!r} contains '\\'; use '/' separators, relative to data.root")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:[/\\]", raw):
        raise DataError(f"{where}: absolute path {raw!r} not allowed; paths must be relative to data.root")
    p = PurePosixPath(raw)
    if ".." in p.parts:
        raise DataError(f"{where}: path {raw!r} escapes data.root ('..' is not allowed)")
    s = p.as_posix()
    if s in ("", "."):
        raise DataError(f"{where}: path {raw!r} does not name a file")
    return s


def _strip_ext(path: str) -> str:
    p = PurePosixPath(path)
    return p.with_suffix("").as_posix() if p.suffix else path


def _norm_attack(attack: str, label: str) -> str:
    if label == "bonafide":
        return "bonafide"
    attack = attack.strip()
    return attack if attack and attack.lower() not in ("bonafide", "bona-fide") else "-"


def _norm_codec(codec: str, qualifier: str = "") -> str:
    codec, qualifier = codec.strip(), qualifier.strip()
    if codec.lower() in _NONE_CODECS:
        codec = "-"
    if qualifier in ("", "-"):
        return codec
    return f"{codec}:{qualifier}"


def _row(where: str, utt_id: str, path: str, label: str, split: str, speaker: str = "",
         attack: str = "", codec: str = "") -> dict:
    utt_id = utt_id.strip()
    if not utt_id:
        raise DataError(f"{where}: empty utterance id")
    label = normalize_label(label, where)
    speaker = speaker.strip()
    return {
        "utt_id": utt_id,
        "path": _clean_relpath(path, where),
        "label": label,
        "split": split,
        "speaker": utt_id if speaker in ("", "-") else speaker,
        "attack": _norm_attack(attack, label),
        "codec": _norm_codec(codec),
        "_where": where,
    }


# --------------------------------------------------------------------------------------------------
# file parsers

def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    return path


def _space_protocol(path: Path, columns: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    """(where, fields) per non-blank line of a space-separated protocol with exactly len(columns) fields."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != len(columns):
                raise DataError(
                    f"{path}:{lineno}: malformed protocol line: expected {len(columns)} space-separated "
                    f"columns ({' '.join(columns)}), got {len(fields)}: {line.strip()[:120]!r}")
            yield f"{path}:{lineno}", fields


def _csv_table(path: Path, required: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, {column: value}) per non-blank data row of a CSV with a header line."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = None
        for fields in reader:
            if not fields or all(not x.strip() for x in fields):
                continue
            if header is None:
                header = [h.strip() for h in fields]
                missing = [c for c in required if c not in header]
                if missing:
                    raise DataError(f"{path}:{reader.line_num}: missing required column(s) {', '.join(missing)} "
                                    f"in header ({', '.join(header)})")
                dup = sorted(c for c, n in Counter(header).items() if n > 1)
                if dup:
                    raise DataError(f"{path}:{reader.line_num}: duplicate column(s) {', '.join(dup)} in header")
                continue
            if len(fields) != len(header):
                raise DataError(f"{path}:{reader.line_num}: malformed line: expected {len(header)} "
                                f"comma-separated fields ({', '.join(header)}), got {len(fields)}")
            yield f"{path}:{reader.line_num}", {h: v.strip() for h, v in zip(header, fields)}
    if header is None:
        raise DataError(f"{path}: empty file, expected a header line with columns {', '.join(required)}")


# --------------------------------------------------------------------------------------------------
# readers: each returns (rows, has_split); has_split is False when the rows' split is still to be made

def _read_csv_file(path: Path) -> tuple[list[dict], bool]:
    rows, splits = [], []
    for where, rec in _csv_table(path, ("path", "label")):
        rel = _clean_relpath(rec["path"], where)
        utt = rec.get("utt_id", "") or _strip_ext(rel)
        rows.append(_row(where, utt, rel, rec["label"], "", rec.get("speaker", ""),
                         rec.get("attack", ""), rec.get("codec", "")))
        splits.append((where, rec.get("split", "")))
    filled = [(w, s) for w, s in splits if s]
    if not filled:
        return rows, False
    if len(filled) != len(splits):
        first = next(w for w, s in splits if not s)
        raise DataError(f"{first}: empty split; the split column must be filled on every line or on none "
                        f"(then a speaker-disjoint split is made from data.seed and data.split_ratios)")
    for row, (where, s) in zip(rows, splits):
        row["split"] = _normalize_split(s, where)
    return rows, True


def _csv_manifest_path(data: dict, repo_root: Path) -> Path:
    p = Path(os.path.expanduser(str(data["manifest"])))
    return p if p.is_absolute() else Path(repo_root) / p


def _read_csv(data: dict, root: Path, repo_root: Path) -> tuple[list[dict], bool]:
    path = _csv_manifest_path(data, repo_root)
    if not path.is_file():
        raise ParamError("data.manifest", f"CSV file not found: {path}")
    return _read_csv_file(path)


def _read_synthetic(data: dict, root: Path, repo_root: Path) -> tuple[list[dict], bool]:
    path = root / "protocol.csv"
    if not path.is_file():
        raise DataError(f"{path}: protocol of the synthetic dataset not found; generate the dataset into "
                        f"data.root first")
    return _read_csv_file(path)


def _within(path: str, root: str) -> bool:
    return path == root or os.path.commonpath([path, root]) == root


def _read_folder(data: dict, root: Path, repo_root: Path) -> tuple[list[dict], bool]:
    root_real = os.path.realpath(root)
    rows = []
    label_dirs = []
    for entry in sorted(os.listdir(root)):
        full = root / entry
        if entry.startswith(".") or not full.is_dir():
            continue  # hidden entries and top-level files (README, checksums, ...) are ignored
        if entry.strip().lower() not in LABEL_ALIASES:
            raise DataError(f"{full}: unknown label directory {entry!r}; the folder source expects "
                            f"<root>/<label>/... with label one of: {', '.join(sorted(LABEL_ALIASES))}")
        if not _within(os.path.realpath(full), root_real):
            raise DataError(f"{full}: symlink resolves outside data.root ({root})")
        label_dirs.append(entry)
    if not label_dirs:
        raise DataError(f"{root}: no label directories; the folder source expects <root>/bonafide/... and "
                        f"<root>/spoof/... (aliases: {', '.join(sorted(LABEL_ALIASES))})")
    for entry in label_dirs:
        for dirpath, dirnames, filenames in os.walk(root / entry, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for d in dirnames:
                real = os.path.realpath(os.path.join(dirpath, d))
                if not _within(real, root_real):
                    raise DataError(f"{os.path.join(dirpath, d)}: symlink resolves outside data.root ({root})")
            # Symlinked directories inside the root are not descended into (os.walk default): their
            # files are reached through their real location, so nothing is listed twice.
            for name in sorted(filenames):
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in AUDIO_EXTENSIONS:
                    continue
                rel = Path(os.path.relpath(os.path.join(dirpath, name), root)).as_posix()
                parts = rel.split("/")
                speaker = parts[1] if len(parts) > 2 else ""  # <label>/<speaker>/.../file
                rows.append(_row(rel, _strip_ext(rel), rel, entry, "", speaker))
    if not rows:
        raise DataError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {', '.join(label_dirs)}")
    return rows, False


def _base_2019(root: Path) -> str:
    if (root / "LA" / "ASVspoof2019_LA_cm_protocols").is_dir():
        return "LA/"
    if (root / "ASVspoof2019_LA_cm_protocols").is_dir():
        return ""
    raise DataError(f"{root / 'LA' / 'ASVspoof2019_LA_cm_protocols'}: not found; data.root must be the "
                    f"directory that contains LA/ (as extracted from LA.zip) or LA/ itself")


def _protocols_2019(root: Path) -> dict[str, Path]:
    base = _base_2019(root)
    return {s: root / f"{base}ASVspoof2019_LA_cm_protocols" / name for s, name in _2019_PROTOCOLS.items()}


def _read_2019(data: dict, root: Path, repo_root: Path) -> tuple[list[dict], bool]:
    base = _base_2019(root)
    rows = []
    for split, proto in _protocols_2019(root).items():
        _require_file(proto, f"ASVspoof 2019 LA {split} protocol")
        for where, (speaker, utt, _, system, key) in _space_protocol(proto, _2019_COLS):
            path = f"{base}ASVspoof2019_LA_{split}/flac/{utt}.flac"
            rows.append(_row(where, utt, path, key, split, speaker, system, "-"))
    return rows, True


def _key_2021(data: dict, root: Path) -> Path:
    """keys/<track>/CM/trial_metadata.txt (as extracted from <track>-keys-full.tar.gz) under data.root,
    or under ASVspoof2021_<track>_eval/ when the keys were extracted there."""
    track = data["track"]
    rel = Path("keys") / track / "CM" / "trial_metadata.txt"
    candidates = [root / rel, root / f"ASVspoof2021_{track}_eval" / rel]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise DataError(f"{candidates[0]}: ASVspoof 2021 {track} key not found (also looked for "
                        f"{candidates[1]}); extract {track}-keys-full.tar.gz into data.root")
    return found


def _subset_matches(value: str, subset: str) -> bool:
    # "hidden" selects every hidden subset, whatever its suffix in a given key release.
    return subset == "all" or value == subset or (subset == "hidden" and value.startswith("hidden"))


def _read_2021(data: dict, root: Path, repo_root: Path) -> tuple[list[dict], bool]:
    track, subset = data["track"], data.get("subset", "eval")
    key = _key_2021(data, root)
    cols = _2021_COLS[track]
    rows, seen = [], Counter()
    for where, f in _space_protocol(key, cols):
        rec = dict(zip(cols, f))
        seen[rec["SUBSET"]] += 1
        if not _subset_matches(rec["SUBSET"], subset):
            continue
        if track == "LA":  # LA conditions are codec + transmission channel
            c, t = _norm_codec(rec["CODEC"]), _norm_codec(rec["TRANSMISSION"])
            codec = "-" if c == t == "-" else f"{c}:{t}"
        else:
            codec = rec["COMPRESSION"]
        path = f"ASVspoof2021_{track}_eval/flac/{rec['UTT']}.flac"
        rows.append(_row(where, rec["UTT"], path, rec["KEY"], "eval", rec["SPEAKER"], rec["ATTACK"], codec))
    if not rows:
        present = ", ".join(f"{k} ({n})" for k, n in sorted(seen.items())) or "none"
        raise DataError(f"{key}: no rows with SUBSET == {subset!r} (data.subset); present: {present}")
    return rows, True


def _protocols_5(root: Path) -> dict[str, Path]:
    out = {}
    for split, (name, _) in _5_PROTOCOLS.items():
        candidates = [root / d / name for d in _5_PROTOCOL_DIRS]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"{candidates[0]}: ASVspoof 5 {split} protocol not found (also looked in "
                            f"{candidates[1].parent}/); extract ASVspoof5_protocols.tar.gz into data.root")
        out[split] = found
    return out


def _read_5(data: dict, root: Path, repo_root: Path) -> tuple[list[dict], bool]:
    rows = []
    for split, proto in _protocols_5(root).items():
        audio_dir = _5_PROTOCOLS[split][1]
        for where, f in _space_protocol(proto, _5_COLS):
            rec = dict(zip(_5_COLS, f))
            codec = _norm_codec(rec["CODEC"], "" if rec["CODEC"] == "-" else rec["CODEC_Q"])
            rows.append(_row(where, rec["UTT"], f"{audio_dir}/{rec['UTT']}.flac", rec["KEY"], split,
                             rec["SPEAKER"], rec["ATTACK"], codec))
    return rows, True


def _meta_itw(root: Path) -> tuple[Path, str]:
    if (root / "meta.csv").is_file():
        return root / "meta.csv", ""
    if (root / "release_in_the_wild" / "meta.csv").is_file():
        return root / "release_in_the_wild" / "meta.csv", "release_in_the_wild/"
    raise DataError(f"{root / 'meta.csv'}: In-the-Wild meta.csv not found (data.root must be "
                    f"release_in_the_wild/ or its parent)")


def _read_itw(data: dict, root: Path, repo_root: Path) -> tuple[list[dict], bool]:
    meta, base = _meta_itw(root)
    rows = []
    for where, rec in _csv_table(meta, ("file", "speaker", "label")):
        rel = _clean_relpath(rec["file"], where)
        rows.append(_row(where, _strip_ext(rel), base + rel, rec["label"], "eval", rec["speaker"]))
    return rows, True


_READERS = {
    "synthetic": _read_synthetic,
    "csv": _read_csv,
    "folder": _read_folder,
    "asvspoof2019": _read_2019,
    "asvspoof2021": _read_2021,
    "asvspoof5": _read_5,
    "in_the_wild": _read_itw,
}


def protocol_files(data: dict, repo_root: Path) -> list[Path]:
    """The protocol/metadata files `read_protocol` reads (DVC deps of the manifest stage).

    Empty for the folder source, whose protocol is the directory listing itself.
    """
    validate_data_params(data)
    source = data["source"]
    if source == "csv":
        return [_csv_manifest_path(data, repo_root)]
    root = dataset_root(data, repo_root)
    if source == "synthetic":
        return [root / "protocol.csv"]
    if source == "folder":
        return []
    if source == "asvspoof2019":
        return list(_protocols_2019(root).values())
    if source == "asvspoof2021":
        return [_key_2021(data, root)]
    if source == "asvspoof5":
        return list(_protocols_5(root).values())
    return [_meta_itw(root)[0]]


# --------------------------------------------------------------------------------------------------
# checks and splitting

def _first(items: Sequence[str], k: int = 5) -> str:
    more = f", ... ({len(items) - k} more)" if len(items) > k else ""
    return ", ".join(items[:k]) + more


def _check_duplicates(rows: list[dict]) -> None:
    where: dict[str, list[str]] = {}
    for r in rows:
        where.setdefault(r["utt_id"], []).append(r["_where"])
    dups = [u for u, w in where.items() if len(w) > 1]
    if dups:
        shown = [f"{u!r} ({' and '.join(where[u][:2])})" for u in dups]
        raise DataError(f"{len(dups)} duplicate utt_id(s): {_first(shown)}")


def _check_files(rows: list[dict], root: Path) -> None:
    """Every path must be a regular file under data.root, symlinks included (one lstat per file)."""
    root_real = os.path.realpath(root)
    dir_ok: dict[str, bool] = {}
    escaping, missing = [], []
    for r in rows:
        rel = r["path"]
        parent = os.path.dirname(rel)
        if parent not in dir_ok:
            dir_ok[parent] = _within(os.path.realpath(os.path.join(root, parent)), root_real)
        full = os.path.join(root, rel)
        if not dir_ok[parent]:
            escaping.append(f"{rel} ({r['_where']})")
            continue
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            missing.append(rel)
            continue
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(full)
            if not _within(real, root_real):
                escaping.append(f"{rel} ({r['_where']})")
                continue
            if not os.path.isfile(real):
                missing.append(rel)
        elif not stat.S_ISREG(st.st_mode):
            missing.append(rel)
    if escaping:
        raise DataError(f"{len(escaping)} path(s) resolve outside data.root ({root}) through a symlink: "
                        f"{_first(escaping)}")
    if missing:
        raise DataError(f"{len(missing)} of {len(rows)} audio files missing under data.root ({root}): "
                        f"{_first(missing)}")


def _speaker_key(seed: int, speaker: str) -> str:
    return hashlib.sha256(f"{seed}\x00{speaker}".encode()).hexdigest()


def speaker_disjoint_split(speakers: Sequence[str], ratios: dict[str, float], seed: int) -> list[str]:
    """Assign a split to each row so that no speaker is in two splits.

    Speakers are ordered by sha256(seed, speaker) (stable across numpy/python versions, and a speaker's
    place does not depend on the others) and laid end to end by file count; a speaker goes to the split
    whose share of [0, 1) (train, then dev, then eval, per `ratios`) contains the midpoint of its files.
    File shares therefore match the ratios up to one speaker's size. Raises DataError if a split with a
    non-zero ratio ends up empty (too few speakers).
    """
    ratios = _check_ratios(ratios)
    if not speakers:
        return []
    counts = Counter(speakers)
    order = sorted(counts, key=lambda s: (_speaker_key(seed, s), s))
    b_train = ratios["train"]
    b_dev = ratios["train"] + ratios["dev"]
    if ratios["eval"] == 0:
        b_dev = math.inf
        if ratios["dev"] == 0:
            b_train = math.inf
    total, cum, assign = len(speakers), 0, {}
    for s in order:
        mid = (cum + counts[s] / 2) / total
        assign[s] = "train" if mid < b_train else "dev" if mid < b_dev else "eval"
        cum += counts[s]
    got = Counter(assign.values())
    empty = [s for s in SPLITS if ratios[s] > 0 and got[s] == 0]
    if empty:
        raise DataError(f"speaker-disjoint split (data.seed={seed}, data.split_ratios={ratios}) left "
                        f"{', '.join(empty)} without speakers: {len(counts)} speaker(s) for {len(speakers)} "
                        f"files; add speakers, change the ratios or the seed")
    return [assign[s] for s in speakers]


def read_protocol(data: dict, repo_root: Path) -> pd.DataFrame:
    """One row per utterance of the configured corpus, columns COLUMNS, sorted by (split, utt_id).

    Validates params (ParamError) and data (DataError): malformed protocol lines, unknown labels,
    duplicate utt ids, paths escaping data.root, missing audio files.
    """
    validate_data_params(data)
    repo_root = Path(repo_root)
    root = dataset_root(data, repo_root)
    rows, has_split = _READERS[data["source"]](data, root, repo_root)
    if not rows:
        raise DataError(f"{root}: the {data['source']} protocol lists no utterances")
    _check_duplicates(rows)
    _check_files(rows, root)
    if data.get("resplit") or not has_split:
        why = "data.resplit is true" if data.get("resplit") else \
            f"the {data['source']} data has no split column of its own"
        ratios, seed = _split_params(data, why)
        for r, s in zip(rows, speaker_disjoint_split([r["speaker"] for r in rows], ratios, seed)):
            r["split"] = s
    df = pd.DataFrame([{c: r[c] for c in COLUMNS} for r in rows], columns=COLUMNS)
    return df.sort_values(["split", "utt_id"], kind="stable").reset_index(drop=True)


def _describe_audio(path: Path, on_audio=None) -> tuple[float, int, int, str]:
    from antispoof.audio import check_finite, read_native
    from antispoof.repro import audio_hash

    samples, sr = read_native(path)
    check_finite(samples, sr, path)
    digest = audio_hash(samples, sr)
    if on_audio is not None:
        on_audio(samples, sr, digest)
    return round(samples.shape[0] / sr, 6), sr, samples.shape[1], digest


def _describe_or_skip(path: Path, on_audio=None) -> tuple[float, int, int, str] | DataError:
    """`_describe_audio`, or the DataError of a bad file (data.on_bad_audio: skip)."""
    try:
        return _describe_audio(path, on_audio)
    except DataError as e:
        return e


def build_manifest(data: dict, repo_root: Path, progress: bool = True, workers: int = 1,
                   on_audio=None) -> pd.DataFrame:
    """`read_protocol` plus duration (s, 6 decimals), native sample_rate, channels and sha256.

    sha256 is `antispoof.repro.audio_hash` of the decoded float32 samples at the native rate (all
    channels, interleaved), so re-encoding a file losslessly or renaming it keeps its hash. Every file
    is decoded once, by `workers` threads (libsndfile and sha256 release the GIL); rows keep protocol
    order whatever the number of threads. Bad audio (undecodable, empty, or holding NaN/Inf samples)
    raises DataError naming the file; with `data.on_bad_audio: skip` such rows are dropped instead and
    listed, with the reason, in the result's `attrs["bad_audio"]` ([{utt_id, path, error}]).
    `on_audio(samples, native_rate, sha256)`, if given, sees every good decoded file (from the pool's
    threads).
    """
    import functools
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    df = read_protocol(data, repo_root)
    root = dataset_root(data, Path(repo_root))
    paths = [root / rel for rel in df["path"].tolist()]
    skip = data.get("on_bad_audio", "fail") == "skip"
    pool = ThreadPoolExecutor(max_workers=max(1, int(workers)))
    try:
        describe = functools.partial(_describe_or_skip if skip else _describe_audio, on_audio=on_audio)
        rows = list(tqdm(pool.map(describe, paths), total=len(paths), desc="manifest", unit="file",
                         disable=not progress, file=sys.stderr, dynamic_ncols=True))
    finally:  # on the first bad file, do not decode the rest of a large corpus before reporting it
        pool.shutdown(wait=True, cancel_futures=True)
    bad = [i for i, r in enumerate(rows) if isinstance(r, DataError)]
    # Tracked in metrics/prepare.json: paths relative to data.root, never where the corpus is mounted.
    bad_audio = [{"utt_id": df["utt_id"].iat[i], "path": df["path"].iat[i],
                  "error": str(rows[i]).replace(f"{root}{os.sep}", "")} for i in bad]
    if bad:
        df = df.drop(index=bad).reset_index(drop=True)
        rows = [r for r in rows if not isinstance(r, DataError)]
    durations, rates, channels, hashes = zip(*rows) if rows else ((), (), (), ())
    df["duration"] = pd.Series(durations, dtype="float64")
    df["sample_rate"] = pd.Series(rates, dtype="int64")
    df["channels"] = pd.Series(channels, dtype="int64")
    df["sha256"] = pd.Series(hashes, dtype=df["utt_id"].dtype)
    df = df[MANIFEST_COLUMNS]
    df.attrs["bad_audio"] = bad_audio
    return df


def read_manifest(path: Path = MANIFEST) -> pd.DataFrame:
    """Read the prepare stage's manifest, checked enough that later stages can trust it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (run the prepare stage first: uv run dvc repro)")
    text_columns = {c: str for c in ("utt_id", "path", "label", "split", "speaker", "attack", "codec")}
    df = pd.read_csv(path, dtype=text_columns, keep_default_na=False)
    missing = [c for c in ("utt_id", "path", "label", "split") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {', '.join(missing)}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"{path}: unknown split values {bad}; expected {', '.join(SPLITS)}")
    dup = df["utt_id"][df["utt_id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate utt_id {dup.iloc[0]!r}")
    return df
