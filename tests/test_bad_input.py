"""Hostile input, one case per row: every expected failure is one line naming the file or key, exit
status 2, no traceback, and nothing a previous good run wrote (outputs, caches) is removed or changed.

Every case runs a real stage (`python -m antispoof.<stage>`) in a copy of one tiny project that has
run the whole pipeline once (tests/hostile_project.py). Also here: a cache on a real full disk (a
small tmpfs, where mounting is allowed) and two real processes training the same run at once.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import Project, deep_update
from hostile_project import HARNESS, OUTPUT_ROOTS, STAGES, cache_of, copy_project, file_hashes, reference, stray_temps

from antispoof.models import build_model
from antispoof.repro.checkpoint import verify_checkpoint
from antispoof.repro.lock import run_lock

SR = 16000


@pytest.fixture
def project(tmp_path, tmp_path_factory, bytecode_cache) -> Project:
    """A fresh copy of the reference project (outputs and cache) for one case."""
    ref, _ = reference(tmp_path_factory, bytecode_cache)
    p = copy_project(ref, tmp_path)
    p.env.update(bytecode_cache)
    return p


def snapshot(p: Project) -> dict[str, str]:
    return file_hashes(*(p.root / r for r in OUTPUT_ROOTS), cache_of(p))


def run_stage(p: Project, stage: str, params: str = "params.yaml", env: dict | None = None) -> subprocess.CompletedProcess:
    module, args, _ = STAGES[stage]
    full_env = {**p.env, **(env or {})}
    return subprocess.run([sys.executable, "-m", f"antispoof.{module}", "--params", params, *args], cwd=p.root,
                          env=full_env, capture_output=True, text=True, timeout=600)


def assert_clear_failure(p: Project, stage: str, names: list[str], params: str = "params.yaml",
                         env: dict | None = None, changed: tuple[str, ...] = ()) -> str:
    """Run `stage`, expect exit 2 with one error line naming every item of `names`, no traceback, and
    every file of the earlier good run (except the `changed` ones the case itself damaged) intact."""
    skip = tuple(str(p.root / c) for c in changed)
    before = {k: v for k, v in snapshot(p).items() if not k.startswith(skip)}
    proc = run_stage(p, stage, params, env)
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if f"antispoof {stage}: error:" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    for name in names:
        assert name in errors[0], f"{name!r} not named in: {errors[0]}"
    after = snapshot(p)
    assert {k: after.get(k) for k in before} == before, "a file of the good run was removed or changed"
    assert not stray_temps(p.root, cache_of(p))
    return errors[0]


def case_params(p: Project, overrides: dict, name: str = "case.yaml") -> str:
    (p.root / name).write_text(yaml.safe_dump(deep_update(p.params(), overrides), sort_keys=False))
    return name


# ------------------------------------------------------------------------------------------ params

PARAM_CASES = {  # overrides -> the key the error must name
    "nan learning rate": ({"train": {"lr": float("nan")}}, "train.lr"),
    "inf confidence": ({"aggregate": {"confidence": float("inf")}}, "aggregate.confidence"),
    "-inf dropout": ({"model": {"lcnn": {"dropout": float("-inf")}}}, "model.lcnn.dropout"),
    "unknown key": ({"train": {"epoch": 3}}, "train.epoch"),
    "wrong type": ({"train": {"batch_size": "eight"}}, "train.batch_size"),
    "out of range": ({"augment": {"prob": 1.5}}, "augment.prob"),
    "unknown codec": ({"augment": {"eval": ["mp4:24k"]}}, "augment.eval[0]"),
    "bad on_bad_audio": ({"data": {"on_bad_audio": "ignore"}}, "data.on_bad_audio"),
}


@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_bad_params_name_the_key(project, case):
    overrides, key = PARAM_CASES[case]
    assert_clear_failure(project, "aggregate", [key], params=case_params(project, overrides))


def test_nan_written_as_yaml_is_rejected_too(project):
    text = (project.root / "params.yaml").read_text().replace("lr: 0.002", "lr: .nan")
    (project.root / "nan.yaml").write_text(text)
    assert "lr: .nan" in text
    assert_clear_failure(project, "train", ["train.lr", "finite"], params="nan.yaml")


# -------------------------------------------------------------------------------- corpus (csv source)

def tone(seed: int, n: int = int(0.3 * SR)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, n).astype(np.float32)


BASE_ROWS = [  # utt_id, label, split, speaker: every split has both classes, speakers are disjoint
    (f"u{i:02d}", label, split, spk)
    for i, (label, split, spk) in enumerate(
        [(lab, "train", s) for s in "ab" for lab in ("bonafide", "spoof", "bonafide", "spoof")]
        + [(lab, "dev", "c") for lab in ("bonafide", "spoof")] + [(lab, "eval", "d") for lab in ("bonafide", "spoof", "bonafide", "spoof")])
]


def write_corpus(p: Project, rows=BASE_ROWS, audio: dict | None = None, paths: dict | None = None,
                 data: dict | None = None) -> str:
    """A csv corpus under corpus/ (float WAV files); `audio`/`paths` override per utt_id. Returns the
    params file that points the project at it."""
    audio, paths = audio or {}, paths or {}
    lines = ["utt_id,path,label,split,speaker"]
    for i, (utt, label, split, spk) in enumerate(rows):
        rel = paths.get(utt, f"{split}/{utt}.wav")
        if utt not in paths:
            (p.root / "corpus" / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(p.root / "corpus" / rel, audio.get(utt, tone(i)), SR, subtype="FLOAT")
        lines.append(f"{utt},{rel},{label},{split},{spk}")
    (p.root / "corpus").mkdir(exist_ok=True)
    (p.root / "corpus/meta.csv").write_text("\n".join(lines) + "\n")
    return case_params(p, {"data": {"source": "csv", "root": "corpus", "manifest": "corpus/meta.csv", **(data or {})}})


def with_bad_sample(value: float, at: int = 1234) -> np.ndarray:
    x = tone(99)
    x[at] = value
    return x


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_audio_is_rejected_naming_file_and_sample(project, value):
    params = write_corpus(project, audio={"u03": with_bad_sample(value)})
    line = assert_clear_failure(project, "prepare", ["corpus/train/u03.wav", "sample 1234", str(value)], params)
    assert "data.on_bad_audio" in line


def prepare_ok(p: Project, params: str) -> tuple[dict, str]:
    proc = run_stage(p, "prepare", params)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return json.loads((p.root / "metrics/prepare.json").read_text())["prepare"], proc.stderr


def test_bad_audio_skipped_on_request_is_listed(project):
    params = write_corpus(project, audio={"u03": with_bad_sample(float("nan"))}, data={"on_bad_audio": "skip"})
    metrics, err = prepare_ok(project, params)
    assert metrics["bad_audio"]["count"] == 1
    (skipped,) = metrics["bad_audio"]["skipped"]
    assert skipped["utt_id"] == "u03" and skipped["path"] == "train/u03.wav"
    assert skipped["error"].startswith("train/u03.wav: sample 1234 ")  # relative to data.root: no absolute path
    manifest = (project.root / "data/prepared/manifest.csv").read_text()
    assert "u03" not in manifest and manifest.count("\n") == len(BASE_ROWS)  # header + all rows but one
    assert "skipped 1 bad audio file" in err


def test_duplicate_audio_is_counted_within_and_across_splits(project):
    same = tone(500)  # u00 and u02: train, bonafide; u12: eval, bonafide
    params = write_corpus(project, audio={"u00": same, "u02": same, "u12": same})
    metrics, err = prepare_ok(project, params)
    dup = metrics["duplicates"]
    assert (dup["groups"], dup["rows"], dup["within_split"], dup["across_splits"], dup["conflicting_labels"]) == (1, 3, 1, 1, 0)
    assert "identical audio" in err and "u00" in err


def test_duplicate_audio_with_conflicting_labels_is_an_error_unless_allowed(project):
    same = tone(501)
    params = write_corpus(project, audio={"u00": same, "u13": same})  # train bonafide, eval spoof
    assert_clear_failure(project, "prepare", ["u00", "u13", "both labels", "data.allow_conflicting_duplicates"], params)
    params = write_corpus(project, audio={"u00": same, "u13": same}, data={"allow_conflicting_duplicates": True})
    metrics, _ = prepare_ok(project, params)
    assert metrics["duplicates"]["conflicting_labels"] == 1 and metrics["duplicates"]["across_splits"] == 1


def test_speaker_in_train_and_eval_is_warned_about(project):
    rows = [(u, lab, split, "a" if u == "u12" else spk) for u, lab, split, spk in BASE_ROWS]
    metrics, err = prepare_ok(project, write_corpus(project, rows))
    assert metrics["speaker_overlap"] == {"count": 1, "speakers": ["a"]}
    assert "1 speaker(s) in more than one split: a" in err


def test_short_clip_is_warned_about(project):
    metrics, err = prepare_ok(project, write_corpus(project, audio={"u05": tone(7, n=10)}))
    assert metrics["short_clips"]["count"] == 1 and metrics["short_clips"]["shortest"] == ["u05 (0.000625 s)"]
    assert "shorter than data.min_seconds_warn" in err


@pytest.mark.parametrize("split,label", [("eval", "spoof"), ("train", "bonafide")])
def test_split_without_a_class_is_rejected(project, split, label):
    rows = [r for r in BASE_ROWS if not (r[2] == split and r[1] == label)]
    assert_clear_failure(project, "prepare", [f"the {split} split has no {label}"], write_corpus(project, rows))


ALREADY_CAUGHT = {  # paths or files that were already rejected before this issue: they stay so
    "path traversal": ({"paths": {"u03": "../outside.wav"}}, ["../outside.wav", "escapes data.root"]),
    "absolute path": ({"paths": {"u03": "/etc/passwd"}}, ["/etc/passwd", "absolute path"]),
    "missing file": ({"paths": {"u03": "train/nowhere.wav"}}, ["train/nowhere.wav", "missing"]),
}


@pytest.mark.parametrize("case", list(ALREADY_CAUGHT))
def test_protocol_paths_stay_rejected(project, case):
    kwargs, names = ALREADY_CAUGHT[case]
    assert_clear_failure(project, "prepare", names, write_corpus(project, **kwargs))


def test_undecodable_and_duplicate_ids_stay_rejected(project):
    params = write_corpus(project)
    (project.root / "corpus/train/u03.wav").write_bytes(b"RIFF not really a wav")
    assert_clear_failure(project, "prepare", ["corpus/train/u03.wav", "cannot decode"], params)
    params = write_corpus(project, rows=BASE_ROWS + [BASE_ROWS[0]])
    assert_clear_failure(project, "prepare", ["duplicate utt_id", "u00"], params)
    params = write_corpus(project)
    (project.root / "corpus/train/u03.wav").unlink()
    os.symlink("/etc/hostname", project.root / "corpus/train/u03.wav")
    assert_clear_failure(project, "prepare", ["train/u03.wav", "outside data.root"], params)


# -------------------------------------------------------------------------------------- model files

class Payload:
    def __reduce__(self):  # what a malicious pickle does: run code when loaded
        return (os.system, ("touch pwned",))


def damage_model(p: Project, how: str) -> None:
    pt, js = p.root / "models/r0/model.pt", p.root / "models/r0/model.json"
    if how == "arbitrary pickle":
        pt.write_bytes(pickle.dumps({"weights": Payload()}))
    elif how == "malicious torch file":
        torch.save({"weights": Payload()}, pt)
    elif how == "truncated":
        pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    elif how == "empty":
        pt.write_bytes(b"")
    elif how == "wrong shapes":
        torch.save(build_model({"name": "lcnn", "lcnn": {**HARNESS["model"]["lcnn"], "channels": [6, 6]}}, SR).state_dict(), pt)
    elif how == "not a state dict":
        torch.save([1, 2, 3], pt)
    elif how == "NaN weights":
        state = torch.load(pt, weights_only=True)
        name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1 and "weight" in k)
        state[name].view(-1)[3] = float("nan")
        torch.save(state, pt)
        (p.root / "nan_param.txt").write_text(name)
    elif how == "model.json not JSON":
        js.write_text('{"run_fingerprint": ')
    elif how == "no model":
        shutil.rmtree(p.root / "models/r0")


MODEL_CASES = {
    "arbitrary pickle": "weights_only=True",
    "malicious torch file": "weights_only=True",
    "truncated": "weights_only=True",
    "empty": "empty file",
    "wrong shapes": "wrong shape",
    "not a state dict": "not a state dict",
    "NaN weights": "non-finite",
    "model.json not JSON": "not valid JSON",
    "no model": "not found",
}


@pytest.mark.parametrize("how", list(MODEL_CASES))
def test_bad_model_files_name_the_file_and_what_to_run(project, how):
    damage_model(project, how)
    file = "models/r0/model.json" if how in ("model.json not JSON", "no model") else "models/r0/model.pt"
    names = [file, MODEL_CASES[how], "dvc repro train@0"]
    if how == "NaN weights":
        names.append(f"parameter {(project.root / 'nan_param.txt').read_text()}")
    assert_clear_failure(project, "evaluate", names, changed=("models/r0",))
    assert not (project.root / "pwned").exists()


# ------------------------------------------------------------------------------ other stage inputs

def test_corrupt_eval_metrics_name_the_file_for_aggregate(project):
    (project.root / "metrics/eval/r0.json").write_text('{"eval_r0": {"pooled": ')
    assert_clear_failure(project, "aggregate", ["metrics/eval/r0.json", "re-run evaluate"], changed=("metrics/eval/r0.json",))


def test_truncated_shard_names_the_shard(project):
    shard = next((project.root / "data/augmented").glob("shard-*.s16"))
    shard.write_bytes(shard.read_bytes()[:100])
    assert_clear_failure(project, "evaluate", [shard.name, "truncated"], changed=("data/augmented",))


@pytest.mark.parametrize("exe", ["/nonexistent/ffmpeg", "/bin/false"])
def test_unusable_ffmpeg_names_the_binary_and_the_variable(project, exe):
    assert_clear_failure(project, "augment-cache", [exe, "IMAGEIO_FFMPEG_EXE"], env={"IMAGEIO_FFMPEG_EXE": exe})


def test_debug_shows_the_traceback_of_a_user_error(project):
    proc = run_stage(project, "aggregate", case_params(project, {"train": {"lr": float("nan")}}),
                     env={"ANTISPOOF_DEBUG": "1"})
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "train.lr" in proc.stderr.splitlines()[-1]


def test_corrupt_resume_checkpoint_is_warned_about_once_and_the_rerun_is_identical(project):
    ref = file_hashes(*(project.root / o for o in STAGES["train"][2]))
    (store,) = [d for d in (cache_of(project) / "checkpoints").iterdir() if d.is_dir()]
    newest = sorted(store.glob("step-*.ckpt"))[-1]
    newest.write_bytes(newest.read_bytes()[:-50])
    shutil.rmtree(project.root / "models/r0")
    proc = run_stage(project, "train")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count(newest.name) == 1, proc.stderr[-3000:]  # one line, not a warning and a print
    assert f"antispoof train: warning: corrupt checkpoint {newest}" in proc.stderr
    assert file_hashes(*(project.root / o for o in STAGES["train"][2])) == ref


# --------------------------------------------------------------------------- full disk, concurrency

@pytest.fixture
def tmpfs(tmp_path):
    """A 256 kB tmpfs (root only); skipped, saying why, where mounting is not allowed."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): disk-full test skipped"
        print(reason)
        pytest.skip(reason)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_cache_on_a_full_disk_is_one_line_and_the_rerun_with_space_is_identical(project, tmpfs):
    ref = file_hashes(*(project.root / o for o in STAGES["augment-cache"][2]))
    env = {"ANTISPOOF_CACHE_DIR": str(tmpfs)}
    line = assert_clear_failure(project, "augment-cache", ["no space left on device", str(tmpfs / "variants/v1")],
                                env=env)
    assert "bytes" in line and not stray_temps(tmpfs)
    # complete entries of the decoded-audio store (filled first, lazily) and of the variant cache
    entries = sorted([*tmpfs.rglob("*.pcm"), *tmpfs.rglob("*.var")])
    assert entries, "the disk should have filled after some entries were written"
    kept = file_hashes(*entries)
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    proc = run_stage(project, "augment-cache", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert file_hashes(*(project.root / o for o in STAGES["augment-cache"][2])) == ref
    assert {k: v for k, v in file_hashes(tmpfs).items() if k in kept} == kept  # complete entries reused
    assert not stray_temps(tmpfs, project.root)


def test_two_processes_training_the_same_run_wait_for_each_other(project, tmp_path):
    """What two `dvc queue` workers with equal params do: two project copies, one shared cache. The test
    holds the run's lock first, so both processes are surely running when it is released."""
    train_outputs = STAGES["train"][2]
    ref = {o: file_hashes(project.root / o) for o in train_outputs}
    (store,) = [d for d in (cache_of(project) / "checkpoints").iterdir() if d.is_dir()]  # same fingerprint
    shutil.rmtree(store)
    copies = []
    for name in ("a", "b"):
        dest = tmp_path / name
        shutil.copytree(project.root, dest)
        for o in train_outputs:
            (shutil.rmtree if (dest / o).is_dir() else os.unlink)(dest / o)
        copies.append(dest)
    module, args, _ = STAGES["train"]
    logs = [tmp_path / f"{d.name}.err" for d in copies]
    with run_lock(store, "test"):
        procs = []
        for d, log in zip(copies, logs):
            with open(log, "w") as err:
                procs.append(subprocess.Popen([sys.executable, "-m", f"antispoof.{module}", *args], cwd=d,
                                              env=project.env, stdout=subprocess.DEVNULL, stderr=err))
        deadline = time.monotonic() + 300
        while not all("waiting for it to finish" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [l.read_text() for l in logs]
            time.sleep(0.2)
    for p in procs:
        p.wait(timeout=600)
    errs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], errs
    for d in copies:
        got = {o: {k.replace(str(d), str(project.root)): v for k, v in file_hashes(d / o).items()} for o in train_outputs}
        assert got == ref
    # one trained from scratch; the other waited for it, then reused its final checkpoint
    assert sorted("resuming from checkpoint at step 8 " in e for e in errs) == [False, True], errs
    assert sum("resuming" in e for e in errs) == 1, errs
    ckpts = sorted(store.glob("step-*.ckpt"))
    assert [c.name for c in ckpts] == ["step-00000004.ckpt", "step-00000006.ckpt", "step-00000008.ckpt"]
    for c in ckpts:
        verify_checkpoint(c)
    assert not stray_temps(store)
