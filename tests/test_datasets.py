"""Corpus readers on small fixtures written in each corpus' exact on-disk layout and protocol format."""
from __future__ import annotations

import os
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from antispoof.datasets import (
    COLUMNS, MANIFEST_COLUMNS, SOURCES, build_manifest, protocol_files, read_protocol,
    speaker_disjoint_split, validate_data_params,
)
from antispoof.errors import DataError, ParamError
from antispoof.repro import audio_hash

RATIOS = {"train": 0.6, "dev": 0.2, "eval": 0.2}


def write_audio(path: Path, seconds: float = 0.05, sr: int = 16000, channels: int = 1) -> np.ndarray:
    """A short int16 noise file whose content depends on its name; returns the int16 samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path.name).encode()) + channels + sr)
    x = (rng.standard_normal((int(round(sr * seconds)), channels)) * 3000).astype(np.int16)
    sf.write(path, x[:, 0] if channels == 1 else x, sr, subtype="PCM_16")
    return x


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def params(source: str, root, **kw) -> dict:
    return {"source": source, "root": str(root), "seed": 0, "sample_rate": 16000, "split_ratios": dict(RATIOS), **kw}


def assert_speaker_disjoint(df: pd.DataFrame) -> None:
    splits_of = defaultdict(set)
    for spk, split in zip(df["speaker"], df["split"]):
        splits_of[spk].add(split)
    assert all(len(s) == 1 for s in splits_of.values()), dict(splits_of)


# --------------------------------------------------------------------------------------------------
# ASVspoof 2019 LA

def make_2019(root: Path, extra_eval: list[str] = ()) -> Path:
    la = root / "LA"
    protos = {
        "train": ("ASVspoof2019.LA.cm.train.trn.txt", ["LA_0079 LA_T_1138215 - - bonafide",
                                                       "LA_0079 LA_T_1000001 - A01 spoof",
                                                       "LA_0080 LA_T_1000002 - A04 spoof"]),
        "dev": ("ASVspoof2019.LA.cm.dev.trl.txt", ["LA_0069 LA_D_1000003 - - bonafide",
                                                   "LA_0069 LA_D_1000004 - A02 spoof"]),
        "eval": ("ASVspoof2019.LA.cm.eval.trl.txt", ["LA_0039 LA_E_2834763 - A11 spoof",
                                                     "LA_0040 LA_E_1000005 - - bonafide", *extra_eval]),
    }
    for split, (name, lines) in protos.items():
        write_lines(la / "ASVspoof2019_LA_cm_protocols" / name, lines)
        for line in lines:
            utt = line.split()[1]
            if utt.startswith("MISSING"):
                continue
            write_audio(la / f"ASVspoof2019_LA_{split}" / "flac" / f"{utt}.flac")
    return root


def test_asvspoof2019_reader(tmp_path):
    root = make_2019(tmp_path / "asv19")
    df = read_protocol(params("asvspoof2019", root), tmp_path)
    assert list(df.columns) == COLUMNS
    assert len(df) == 7
    assert list(df["split"]) == ["dev", "dev", "eval", "eval", "train", "train", "train"]
    row = df.set_index("utt_id").loc["LA_T_1138215"]
    assert row["path"] == "LA/ASVspoof2019_LA_train/flac/LA_T_1138215.flac"
    assert (row["label"], row["speaker"], row["attack"], row["codec"]) == ("bonafide", "LA_0079", "bonafide", "-")
    row = df.set_index("utt_id").loc["LA_E_2834763"]
    assert (row["label"], row["split"], row["attack"]) == ("spoof", "eval", "A11")
    # data.root may also be LA/ itself; paths stay relative to data.root.
    df2 = read_protocol(params("asvspoof2019", "asv19/LA"), tmp_path)
    assert df2["path"].iloc[0] == "ASVspoof2019_LA_dev/flac/LA_D_1000003.flac"
    assert [p.name for p in protocol_files(params("asvspoof2019", root), tmp_path)] == [
        "ASVspoof2019.LA.cm.train.trn.txt", "ASVspoof2019.LA.cm.dev.trl.txt", "ASVspoof2019.LA.cm.eval.trl.txt"]


def test_asvspoof2019_malformed_line(tmp_path):
    root = make_2019(tmp_path / "asv19")
    proto = root / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.dev.trl.txt"
    proto.write_text("LA_0069 LA_D_1000003 - - bonafide\n\nLA_0069 LA_D_1000004 A02 spoof\n")
    with pytest.raises(DataError, match=r"ASVspoof2019\.LA\.cm\.dev\.trl\.txt:3: malformed protocol line: "
                                        r"expected 5 space-separated columns .*got 4"):
        read_protocol(params("asvspoof2019", root), tmp_path)


def test_missing_files_count_and_first_five(tmp_path):
    root = make_2019(tmp_path / "asv19", [f"LA_0041 MISSING_{i} - A12 spoof" for i in range(7)])
    with pytest.raises(DataError) as e:
        read_protocol(params("asvspoof2019", root), tmp_path)
    msg = str(e.value)
    assert "7 of 14 audio files missing" in msg and str(root) in msg
    assert all(f"MISSING_{i}.flac" in msg for i in range(5))
    assert "MISSING_5" not in msg and "(2 more)" in msg


def test_unknown_label_lists_allowed(tmp_path):
    root = make_2019(tmp_path / "asv19")
    proto = root / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt"
    proto.write_text("LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1000001 - A01 spoofed-ish\n")
    with pytest.raises(DataError, match=r"trn\.txt:2: unknown label 'spoofed-ish'; allowed: .*bonafide.*spoof"):
        read_protocol(params("asvspoof2019", root), tmp_path)


def test_duplicate_utt_ids(tmp_path):
    root = make_2019(tmp_path / "asv19")
    proto = root / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt"
    proto.write_text("LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1138215 - A01 spoof\n")
    with pytest.raises(DataError, match=r"1 duplicate utt_id\(s\): 'LA_T_1138215' \(.*trn\.txt:1 and .*trn\.txt:2\)"):
        read_protocol(params("asvspoof2019", root), tmp_path)


def test_missing_protocol_file(tmp_path):
    root = make_2019(tmp_path / "asv19")
    (root / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.eval.trl.txt").unlink()
    with pytest.raises(DataError, match=r"ASVspoof2019\.LA\.cm\.eval\.trl\.txt: ASVspoof 2019 LA eval protocol not found"):
        read_protocol(params("asvspoof2019", root), tmp_path)


# --------------------------------------------------------------------------------------------------
# ASVspoof 2021

LA21 = ["LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval",
        "LA_0012 LA_E_1000001 none - bonafide bonafide notrim eval",
        "LA_0012 LA_E_1000002 g722 loc_tx A19 spoof trim progress",
        "LA_0013 LA_E_1000003 ulaw sin_tx bonafide bonafide notrim hidden"]
DF21 = ["LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -",
        "LA_0024 DF_E_2000012 mp3m4a vcc2020 - bonafide notrim eval - - - - -",
        "LA_0025 DF_E_2000013 ogg vcc2018 A16 spoof notrim eval waveform_concatenation - - - -"]


def make_2021(root: Path, track: str, lines: list[str], audio_for=("eval",)) -> Path:
    write_lines(root / "keys" / track / "CM" / "trial_metadata.txt", lines)
    for line in lines:
        f = line.split()
        if f[7] in audio_for:
            write_audio(root / f"ASVspoof2021_{track}_eval" / "flac" / f"{f[1]}.flac")
    return root


def test_asvspoof2021_la_subset_eval(tmp_path):
    root = make_2021(tmp_path / "asv21", "LA", LA21)
    df = read_protocol(params("asvspoof2021", root, track="LA"), tmp_path)
    assert list(df["utt_id"]) == ["LA_E_1000001", "LA_E_9332881"]
    assert set(df["split"]) == {"eval"}
    assert list(df["codec"]) == ["-", "alaw:ita_tx"]
    assert list(df["attack"]) == ["bonafide", "A07"]
    assert df["path"].iloc[1] == "ASVspoof2021_LA_eval/flac/LA_E_9332881.flac"
    assert protocol_files(params("asvspoof2021", root, track="LA"), tmp_path) == [root / "keys/LA/CM/trial_metadata.txt"]


def test_asvspoof2021_subset_all_and_unknown(tmp_path):
    root = make_2021(tmp_path / "asv21", "LA", LA21, audio_for=("eval", "progress", "hidden"))
    df = read_protocol(params("asvspoof2021", root, track="LA", subset="all"), tmp_path)
    assert len(df) == 4
    df = read_protocol(params("asvspoof2021", root, track="LA", subset="progress"), tmp_path)
    assert list(df["utt_id"]) == ["LA_E_1000002"] and df["codec"].iloc[0] == "g722:loc_tx"
    df = read_protocol(params("asvspoof2021", root, track="LA", subset="hidden"), tmp_path)
    assert list(df["utt_id"]) == ["LA_E_1000003"] and df["codec"].iloc[0] == "ulaw:sin_tx"
    with pytest.raises(DataError, match=r"trial_metadata\.txt: no rows with SUBSET == 'other'.*present: eval \(2\), "
                                        r"hidden \(1\), progress \(1\)"):
        read_protocol(params("asvspoof2021", root, track="LA", subset="other"), tmp_path)


def test_asvspoof2021_df(tmp_path):
    root = make_2021(tmp_path / "asv21", "DF", DF21)
    df = read_protocol(params("asvspoof2021", root, track="DF"), tmp_path)
    assert list(df["utt_id"]) == ["DF_E_2000012", "DF_E_2000013"]
    assert list(df["codec"]) == ["mp3m4a", "ogg"]
    assert list(df["label"]) == ["bonafide", "spoof"]
    assert df["path"].iloc[0] == "ASVspoof2021_DF_eval/flac/DF_E_2000012.flac"


def test_asvspoof2021_wrong_column_count(tmp_path):
    root = make_2021(tmp_path / "asv21", "DF", LA21)  # an LA key where the DF key is expected
    with pytest.raises(DataError, match=r"DF/CM/trial_metadata\.txt:1: malformed protocol line: expected 13"):
        read_protocol(params("asvspoof2021", root, track="DF"), tmp_path)


def test_asvspoof2021_resplit_is_speaker_disjoint(tmp_path):
    lines = [f"LA_{i // 2:04d} LA_E_{i:07d} none - {'bonafide' if i % 3 == 0 else 'A07'} "
             f"{'bonafide' if i % 3 == 0 else 'spoof'} notrim eval" for i in range(40)]
    root = make_2021(tmp_path / "asv21", "LA", lines)
    df = read_protocol(params("asvspoof2021", root, track="LA", resplit=True), tmp_path)
    assert set(df["split"]) == {"train", "dev", "eval"}
    assert_speaker_disjoint(df)


# --------------------------------------------------------------------------------------------------
# ASVspoof 5

AS5 = {
    "train": ["T_4850 T_0000000000 F - - - AC3 A05 spoof -", "T_3734 T_0000000011 F - - - - bonafide bonafide -"],
    "dev": ["D_0062 D_0000000001 M - - - AC2 A12 spoof -", "D_0062 D_0000000002 M - - - - bonafide bonafide -"],
    "eval": ["E_1607 E_0009538969 M C05 2 E_0009486171 AC1 A26 spoof -",
             "E_1608 E_0000000003 F - - - - bonafide bonafide -"],
}


def make_5(root: Path, protocol_dir: str = "ASVspoof5_protocols") -> Path:
    names = {"train": ("ASVspoof5.train.tsv", "flac_T"), "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D"),
             "eval": ("ASVspoof5.eval.track_1.tsv", "flac_E_eval")}
    for split, (name, audio) in names.items():
        write_lines(root / protocol_dir / name, AS5[split])
        for line in AS5[split]:
            write_audio(root / audio / f"{line.split()[1]}.flac")
    return root


@pytest.mark.parametrize("protocol_dir", ["ASVspoof5_protocols", ""])
def test_asvspoof5_reader(tmp_path, protocol_dir):
    root = make_5(tmp_path / "asv5", protocol_dir)
    df = read_protocol(params("asvspoof5", root), tmp_path).set_index("utt_id")
    assert len(df) == 6
    e = df.loc["E_0009538969"]
    assert (e["split"], e["path"], e["codec"], e["attack"], e["speaker"], e["label"]) == (
        "eval", "flac_E_eval/E_0009538969.flac", "C05:2", "A26", "E_1607", "spoof")
    t = df.loc["T_0000000011"]
    assert (t["split"], t["path"], t["codec"], t["attack"], t["label"]) == (
        "train", "flac_T/T_0000000011.flac", "-", "bonafide", "bonafide")
    assert df.loc["D_0000000001", "path"] == "flac_D/D_0000000001.flac"


def test_asvspoof5_missing_protocol(tmp_path):
    root = make_5(tmp_path / "asv5")
    (root / "ASVspoof5_protocols/ASVspoof5.dev.track_1.tsv").unlink()
    with pytest.raises(DataError, match=r"ASVspoof5\.dev\.track_1\.tsv: ASVspoof 5 dev protocol not found"):
        read_protocol(params("asvspoof5", root), tmp_path)


# --------------------------------------------------------------------------------------------------
# In-the-Wild

def make_itw(parent: Path, n: int = 4) -> Path:
    base = parent / "release_in_the_wild"
    lines = ["file,speaker,label"]
    for i in range(n):
        lines.append(f'{i}.wav,"Speaker, No{i % 5}",{"bona-fide" if i % 2 else "spoof"}')
        write_audio(base / f"{i}.wav")
    write_lines(base / "meta.csv", lines)
    return base


def test_in_the_wild_reader(tmp_path):
    base = make_itw(tmp_path / "itw")
    df = read_protocol(params("in_the_wild", base), tmp_path)
    assert list(df["utt_id"]) == ["0", "1", "2", "3"]
    assert list(df["label"]) == ["spoof", "bonafide", "spoof", "bonafide"]
    assert set(df["split"]) == {"eval"}
    assert df["speaker"].iloc[1] == "Speaker, No1"
    assert df["path"].iloc[0] == "0.wav"
    # The parent of release_in_the_wild/ works too.
    df2 = read_protocol(params("in_the_wild", tmp_path / "itw"), tmp_path)
    assert df2["path"].iloc[0] == "release_in_the_wild/0.wav"


def test_in_the_wild_resplit(tmp_path):
    base = make_itw(tmp_path / "itw", n=30)
    df = read_protocol(params("in_the_wild", base, resplit=True, split_ratios={"train": 0.6, "dev": 0.2, "eval": 0.2}), tmp_path)
    assert set(df["split"]) == {"train", "dev", "eval"}
    assert_speaker_disjoint(df)


def test_in_the_wild_bad_label(tmp_path):
    base = make_itw(tmp_path / "itw")
    (base / "meta.csv").write_text("file,speaker,label\n0.wav,A,bona-fide\n1.wav,B,deepfake\n")
    with pytest.raises(DataError, match=r"meta\.csv:3: unknown label 'deepfake'; allowed:"):
        read_protocol(params("in_the_wild", base), tmp_path)


# --------------------------------------------------------------------------------------------------
# csv (corpus outside the repository) and build_manifest

def make_csv_corpus(tmp_path: Path) -> tuple[Path, Path]:
    repo, corpus = tmp_path / "repo", tmp_path / "corpus"
    write_audio(corpus / "a" / "x.wav")                          # duplicate basename ...
    write_audio(corpus / "b" / "x.wav", seconds=0.2)             # ... in another folder
    write_audio(corpus / "c" / "narrow.flac", sr=8000, seconds=1.5)
    write_audio(corpus / "c" / "stereo.wav", channels=2, seconds=1.25)
    write_audio(corpus / "d" / "short.flac", seconds=0.3)
    lines = ["path,label,speaker,attack,notes",
             "a/x.wav,bonafide,s1,,first",
             "b/x.wav,spoof,s2,A01,",
             "c/narrow.flac,Bona-Fide,s3,,",
             "./c/stereo.wav,fake,s4,,",
             "d/short.flac,spoof,,,no speaker"]
    write_lines(repo / "data" / "list.csv", lines)
    return repo, corpus


def csv_params(corpus, **kw):
    ratios = kw.pop("split_ratios", {"train": 0.4, "dev": 0.2, "eval": 0.4})
    return params("csv", corpus, manifest="data/list.csv", split_ratios=ratios, **kw)


def test_csv_reader_defaults(tmp_path):
    repo, corpus = make_csv_corpus(tmp_path)
    df = read_protocol(csv_params(corpus), repo).set_index("utt_id")
    assert sorted(df.index) == ["a/x", "b/x", "c/narrow", "c/stereo", "d/short"]
    assert df.loc["c/stereo", "path"] == "c/stereo.wav"
    assert df.loc["c/narrow", "label"] == "bonafide" and df.loc["c/stereo", "label"] == "spoof"
    assert df.loc["a/x", "attack"] == "bonafide" and df.loc["b/x", "attack"] == "A01"
    assert df.loc["c/stereo", "attack"] == "-" and df.loc["a/x", "codec"] == "-"
    assert df.loc["d/short", "speaker"] == "d/short"  # no speaker: the file is its own speaker
    assert set(df["split"]) <= {"train", "dev", "eval"}
    assert protocol_files(csv_params(corpus), repo) == [repo / "data/list.csv"]


def test_build_manifest(tmp_path):
    repo, corpus = make_csv_corpus(tmp_path)
    m = build_manifest(csv_params(corpus), repo, progress=False)
    assert list(m.columns) == MANIFEST_COLUMNS
    assert list(zip(m["split"], m["utt_id"])) == sorted(zip(m["split"], m["utt_id"]))
    r = m.set_index("utt_id")
    assert (r.loc["c/narrow", "sample_rate"], r.loc["c/narrow", "duration"], r.loc["c/narrow", "channels"]) == (8000, 1.5, 1)
    assert (r.loc["c/stereo", "channels"], r.loc["c/stereo", "duration"]) == (2, 1.25)
    assert r.loc["d/short", "duration"] == 0.3 and r.loc["a/x", "duration"] == 0.05
    native, sr = sf.read(corpus / "c/stereo.wav", dtype="float32", always_2d=True)
    assert r.loc["c/stereo", "sha256"] == audio_hash(native, sr)
    native, sr = sf.read(corpus / "c/narrow.flac", dtype="float32")
    assert r.loc["c/narrow", "sha256"] == audio_hash(native, sr)
    assert r.loc["a/x", "sha256"] != r.loc["b/x", "sha256"]
    # Deterministic: a second run is identical, in content and in CSV bytes.
    m2 = build_manifest(csv_params(corpus), repo, progress=False)
    pd.testing.assert_frame_equal(m, m2)
    assert m.to_csv(index=False) == m2.to_csv(index=False)
    # ... and the same with several decoding threads (rows keep protocol order)
    m_pool = build_manifest(csv_params(corpus), repo, progress=False, workers=3)
    assert m.to_csv(index=False) == m_pool.to_csv(index=False)
    # Changing one file's audio changes its hash (only its); re-encoding WAV -> FLAC does not.
    write_audio(corpus / "b" / "x.wav", seconds=0.21)
    m3 = build_manifest(csv_params(corpus), repo, progress=False)
    changed = m3["sha256"] != m["sha256"]
    assert list(m3.loc[changed, "utt_id"]) == ["b/x"]
    x, sr = sf.read(corpus / "a/x.wav", dtype="int16")
    sf.write(corpus / "a/x.flac", x, sr, subtype="PCM_16")
    (repo / "data/list2.csv").write_text("path,label,split\na/x.flac,bonafide,train\n")
    m4 = build_manifest(params("csv", corpus, manifest="data/list2.csv"), repo, progress=False)
    assert m4["sha256"].iloc[0] == r.loc["a/x", "sha256"]


def test_csv_split_column_and_aliases(tmp_path):
    repo, corpus = make_csv_corpus(tmp_path)
    write_lines(repo / "data/list.csv", ["path,label,split,utt_id,codec", "a/x.wav,bonafide,train,u1,mp3",
                                         "b/x.wav,spoof,validation,u2,", "d/short.flac,spoof,test,u3,none"])
    df = read_protocol(csv_params(corpus), repo)
    assert list(zip(df["utt_id"], df["split"], df["codec"])) == [("u2", "dev", "-"), ("u3", "eval", "-"), ("u1", "train", "mp3")]
    write_lines(repo / "data/list.csv", ["path,label,split", "a/x.wav,bonafide,train", "b/x.wav,spoof,"])
    with pytest.raises(DataError, match=r"list\.csv:3: empty split"):
        read_protocol(csv_params(corpus), repo)
    write_lines(repo / "data/list.csv", ["path,label,split", "a/x.wav,bonafide,holdout"])
    with pytest.raises(DataError, match=r"list\.csv:2: unknown split 'holdout'; allowed:"):
        read_protocol(csv_params(corpus), repo)


def test_csv_malformed_rows_and_header(tmp_path):
    repo, corpus = make_csv_corpus(tmp_path)
    write_lines(repo / "data/list.csv", ["path,label", "a/x.wav,bonafide", "b/x.wav,spoof,extra"])
    with pytest.raises(DataError, match=r"list\.csv:3: malformed line: expected 2 comma-separated fields"):
        read_protocol(csv_params(corpus), repo)
    write_lines(repo / "data/list.csv", ["file,label", "a/x.wav,bonafide"])
    with pytest.raises(DataError, match=r"list\.csv:1: missing required column\(s\) path"):
        read_protocol(csv_params(corpus), repo)
    write_lines(repo / "data/list.csv", ["path,label,utt_id", "a/x.wav,bonafide,u", "b/x.wav,spoof,u"])
    with pytest.raises(DataError, match=r"duplicate utt_id.*'u' \(.*list\.csv:2 and .*list\.csv:3\)"):
        read_protocol(csv_params(corpus), repo)


@pytest.mark.parametrize("bad, msg", [
    ("../outside.wav", r"list\.csv:2: path '\.\./outside\.wav' escapes data\.root"),
    ("a/../../outside.wav", r"escapes data\.root"),
    ("/etc/passwd", r"list\.csv:2: absolute path '/etc/passwd' not allowed"),
    ("a\\x.wav", r"use '/' separators"),
])
def test_csv_paths_escaping_root(tmp_path, bad, msg):
    repo, corpus = make_csv_corpus(tmp_path)
    write_audio(tmp_path / "outside.wav")
    write_lines(repo / "data/list.csv", ["path,label", f"{bad},spoof"])
    with pytest.raises(DataError, match=msg):
        read_protocol(csv_params(corpus), repo)


def test_symlinks_resolving_outside_root(tmp_path):
    repo, corpus = make_csv_corpus(tmp_path)
    write_audio(tmp_path / "elsewhere" / "o.wav")
    os.symlink(tmp_path / "elsewhere" / "o.wav", corpus / "a" / "link.wav")
    os.symlink(tmp_path / "elsewhere", corpus / "dirlink")
    os.symlink(corpus / "b" / "x.wav", corpus / "a" / "inside.wav")  # inside the root: fine
    write_lines(repo / "data/list.csv", ["path,label", "a/inside.wav,spoof"])
    assert len(read_protocol(csv_params(corpus, split_ratios={"train": 1, "dev": 0, "eval": 0}), repo)) == 1
    for rel in ("a/link.wav", "dirlink/o.wav"):
        write_lines(repo / "data/list.csv", ["path,label", f"{rel},spoof"])
        with pytest.raises(DataError, match=rf"1 path\(s\) resolve outside data\.root .*{rel}"):
            read_protocol(csv_params(corpus), repo)


def test_empty_audio_file_in_manifest(tmp_path):
    repo, corpus = make_csv_corpus(tmp_path)
    sf.write(corpus / "e.wav", np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    write_lines(repo / "data/list.csv", ["path,label,split", "e.wav,spoof,eval"])
    with pytest.raises(DataError, match=r"e\.wav: audio file is empty"):
        build_manifest(csv_params(corpus), repo, progress=False)


def test_bad_file_among_many_is_named_by_the_decoding_pool(tmp_path):
    repo, corpus = make_csv_corpus(tmp_path)
    for i in range(40):
        write_audio(corpus / "many" / f"{i:02d}.wav", seconds=0.05)
    (corpus / "many" / "17.wav").write_bytes(b"RIFF....not audio")
    lines = ["path,label,split"] + [f"many/{i:02d}.wav,spoof,eval" for i in range(40)]
    write_lines(repo / "data/list.csv", lines)
    with pytest.raises(DataError, match=r"many/17\.wav"):
        build_manifest(csv_params(corpus), repo, progress=False, workers=4)


# --------------------------------------------------------------------------------------------------
# folder and synthetic

def make_folder(root: Path) -> Path:
    write_audio(root / "bonafide" / "spk1" / "a.wav")
    write_audio(root / "bonafide" / "spk2" / "a.flac")
    write_audio(root / "real" / "loose.wav", sr=8000)
    write_audio(root / "spoof" / "spk1" / "a.wav")               # same basename as bonafide/spk1/a.wav
    write_audio(root / "fake" / "spk3" / "deep" / "b.flac", channels=2)
    (root / "README.txt").write_text("ignored")
    (root / "spoof" / "spk1" / "notes.txt").write_text("ignored")
    return root


def test_folder_reader(tmp_path):
    root = make_folder(tmp_path / "fold")
    df = read_protocol(params("folder", root, split_ratios={"train": 0.5, "dev": 0.0, "eval": 0.5}), tmp_path)
    d = df.set_index("utt_id")
    assert sorted(d.index) == ["bonafide/spk1/a", "bonafide/spk2/a", "fake/spk3/deep/b", "real/loose", "spoof/spk1/a"]
    assert d.loc["real/loose", "label"] == "bonafide" and d.loc["fake/spk3/deep/b", "label"] == "spoof"
    assert d.loc["spoof/spk1/a", "speaker"] == "spk1" and d.loc["real/loose", "speaker"] == "real/loose"
    assert d.loc["fake/spk3/deep/b", "path"] == "fake/spk3/deep/b.flac"
    assert set(df["split"]) == {"train", "eval"}
    assert_speaker_disjoint(df)
    assert protocol_files(params("folder", root), tmp_path) == []


def test_folder_unknown_label_dir_and_escaping_symlink(tmp_path):
    root = make_folder(tmp_path / "fold")
    (root / "other").mkdir()
    with pytest.raises(DataError, match=r"other: unknown label directory 'other'.*one of: .*bonafide"):
        read_protocol(params("folder", root), tmp_path)
    (root / "other").rmdir()
    write_audio(tmp_path / "outside" / "o.wav")
    os.symlink(tmp_path / "outside" / "o.wav", root / "spoof" / "o.wav")
    with pytest.raises(DataError, match=r"resolve outside data\.root .*spoof/o\.wav"):
        read_protocol(params("folder", root), tmp_path)
    (root / "spoof" / "o.wav").unlink()
    os.symlink(tmp_path / "outside", root / "spoof" / "more")
    with pytest.raises(DataError, match=r"spoof/more: symlink resolves outside data\.root"):
        read_protocol(params("folder", root), tmp_path)


def test_synthetic_reader(tmp_path):
    root = tmp_path / "synth"
    write_audio(root / "bonafide" / "0.wav")
    write_audio(root / "spoof" / "0.wav")
    write_lines(root / "protocol.csv", ["path,label,split,speaker,attack", "bonafide/0.wav,bonafide,train,s0,-",
                                        "spoof/0.wav,spoof,dev,s1,tts_a"])
    df = read_protocol(params("synthetic", root), tmp_path)
    assert list(df["utt_id"]) == ["spoof/0", "bonafide/0"]
    assert list(df["split"]) == ["dev", "train"] and list(df["attack"]) == ["tts_a", "bonafide"]
    (root / "protocol.csv").unlink()
    with pytest.raises(DataError, match=r"protocol\.csv: protocol of the synthetic dataset not found"):
        read_protocol(params("synthetic", root), tmp_path)


# --------------------------------------------------------------------------------------------------
# splitting

def test_speaker_disjoint_split_properties():
    speakers = [f"spk{i:02d}" for i in range(40) for _ in range(1 + i % 4)]
    a = speaker_disjoint_split(speakers, RATIOS, seed=1)
    assert a == speaker_disjoint_split(speakers, RATIOS, seed=1)
    assert a != speaker_disjoint_split(speakers, RATIOS, seed=2)
    assert all(len({s for spk, s in zip(speakers, a) if spk == k}) == 1 for k in set(speakers))
    share = {s: a.count(s) / len(a) for s in ("train", "dev", "eval")}
    for s, r in RATIOS.items():
        assert abs(share[s] - r) <= 4 / len(a) + 1e-9  # within one speaker's size
    # A speaker's split does not depend on the order of rows.
    b = speaker_disjoint_split(speakers[::-1], RATIOS, seed=1)[::-1]
    assert a == b
    # Zero ratios give empty splits.
    assert set(speaker_disjoint_split(speakers, {"train": 0.8, "dev": 0.2, "eval": 0.0}, seed=3)) == {"train", "dev"}
    assert set(speaker_disjoint_split(speakers, {"train": 1.0, "dev": 0.0, "eval": 0.0}, seed=3)) == {"train"}
    with pytest.raises(DataError, match=r"left .* without speakers: 2 speaker\(s\)"):
        speaker_disjoint_split(["a", "a", "b"], RATIOS, seed=0)


def test_reader_split_deterministic_and_seeded(tmp_path):
    repo, corpus = tmp_path / "repo", tmp_path / "corpus"
    lines = ["path,label,speaker"]
    for i in range(36):
        rel = f"s{i % 12}/{i}.wav"
        write_audio(corpus / rel, seconds=0.01)
        lines.append(f"{rel},{'bonafide' if i % 2 else 'spoof'},S{i % 12}")
    write_lines(repo / "data/list.csv", lines)
    p = params("csv", corpus, manifest="data/list.csv")
    a = read_protocol(dict(p, seed=7), repo)
    assert_speaker_disjoint(a)
    pd.testing.assert_frame_equal(a, read_protocol(dict(p, seed=7), repo))
    b = read_protocol(dict(p, seed=8), repo)
    assert_speaker_disjoint(b)
    assert dict(zip(a["utt_id"], a["split"])) != dict(zip(b["utt_id"], b["split"]))
    with pytest.raises(ParamError, match=r"data\.split_ratios: required because the csv data has no split"):
        read_protocol({k: v for k, v in p.items() if k != "split_ratios"}, repo)


# --------------------------------------------------------------------------------------------------
# params

@pytest.mark.parametrize("data, key", [
    ({"source": "csv", "root": "x"}, "data.manifest"),
    ({"source": "asvspoof2021", "root": "x"}, "data.track"),
    ({"source": "asvspoof2021", "root": "x", "track": "PA"}, "data.track"),
    ({"source": "kaggle", "root": "x"}, "data.source"),
    ({"source": "folder"}, "data.root"),
    ({"source": "folder", "root": "x", "split_ratios": {"train": 0.5, "dev": 0.2, "eval": 0.2}}, "data.split_ratios"),
    ({"source": "folder", "root": "x", "split_ratios": {"train": 1.0}}, "data.split_ratios"),
    ({"source": "folder", "root": "x", "split_ratios": {"train": 1.2, "dev": -0.2, "eval": 0}}, "data.split_ratios.dev"),
    ({"source": "folder", "root": "x", "seed": "1"}, "data.seed"),
    ({"source": "folder", "root": "x", "sample_rate": 0}, "data.sample_rate"),
    ({"source": "in_the_wild", "root": "x", "resplit": True, "seed": 1}, "data.split_ratios"),
    ({"source": "in_the_wild", "root": "x", "resplit": "yes"}, "data.resplit"),
])
def test_validate_data_params(data, key):
    with pytest.raises(ParamError) as e:
        validate_data_params(data)
    assert e.value.key == key and str(e.value).startswith(f"params.yaml: {key}: ")


def test_validate_accepts_every_source_and_missing_root_dir(tmp_path):
    for s in SOURCES:
        validate_data_params({"source": s, "root": "r", "manifest": "m.csv", "track": "DF", "split_ratios": RATIOS})
    with pytest.raises(ParamError, match=r"data\.root: dataset root is not a directory: .*nope"):
        read_protocol(params("folder", "nope"), tmp_path)
    with pytest.raises(ParamError, match=r"data\.manifest: CSV file not found: .*missing\.csv"):
        read_protocol(params("csv", tmp_path, manifest="missing.csv"), tmp_path)


def test_asvspoof2021_keys_inside_eval_dir_and_missing_key(tmp_path):
    root = tmp_path / "asv21"
    make_2021(root / "ASVspoof2021_DF_eval", "DF", DF21)  # writes keys/ under the eval dir ...
    for f in (root / "ASVspoof2021_DF_eval" / "ASVspoof2021_DF_eval" / "flac").iterdir():  # ... audio moved up
        (root / "ASVspoof2021_DF_eval" / "flac").mkdir(exist_ok=True)
        f.rename(root / "ASVspoof2021_DF_eval" / "flac" / f.name)
    df = read_protocol(params("asvspoof2021", root, track="DF"), tmp_path)
    assert list(df["path"]) == ["ASVspoof2021_DF_eval/flac/DF_E_2000012.flac", "ASVspoof2021_DF_eval/flac/DF_E_2000013.flac"]
    with pytest.raises(DataError, match=r"keys/LA/CM/trial_metadata\.txt: ASVspoof 2021 LA key not found"):
        read_protocol(params("asvspoof2021", root, track="LA"), tmp_path)
