"""A very small project for the hostile-input and kill-anywhere tests: every stage runs for real, in
seconds (importable because pytest puts tests/ on sys.path)."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from conftest import Project, make_project, tiny_params

# Smaller than conftest.TINY: one replicate, short clips, one codec, a 2-conv model.
HARNESS = tiny_params(
    replicates=[0],
    data={"synthetic": {"speakers": 6, "attacks": 2, "utterances_per_speaker": 8, "spoof_fraction": 0.5,
                        "min_seconds": 0.4, "max_seconds": 0.6}},
    augment={"prob": 0.5, "train": ["mulaw"], "eval": ["mulaw"], "num_shards": 2},
    model={"lcnn": {"n_lfcc": 8, "n_filter": 12, "channels": [4, 4]}},
    train={"epochs": 2, "batch_size": 4, "crop_seconds": 0.3, "checkpoint_every": 2},
    evaluate={"det_points": 10},
    runtime={"num_workers": 1},
)

STAGES = {  # module, arguments, outputs (files or directories, relative to the project)
    "prepare": ("prepare", (), ("data/raw", "data/prepared/manifest.csv", "metrics/prepare.json")),
    "augment-cache": ("augment_cache", ("--no-progress",), ("data/augmented", "metrics/augment.json")),
    "train": ("train", ("--replicate", "0"), ("models/r0", "metrics/train/r0.json", "plots/train/r0.csv")),
    "evaluate": ("evaluate", ("--replicate", "0"),
                 ("scores/r0", "metrics/eval/r0.json", "plots/det/r0", "plots/hist/r0")),
    "aggregate": ("aggregate", (), ("metrics/aggregate.json", "reports/aggregate.md", "plots/eer_by_condition.csv")),
}
OUTPUT_ROOTS = ("data", "models", "metrics", "plots", "scores", "reports")


def cache_of(project: Project) -> Path:
    return Path(project.env["ANTISPOOF_CACHE_DIR"])


def run_pipeline(project: Project) -> dict[str, float]:
    """Every stage once, uninterrupted; returns each stage's wall time (s)."""
    times = {}
    for name, (module, args, _) in STAGES.items():
        start = time.monotonic()
        project.stage(module, *args)
        times[name] = time.monotonic() - start
    return times


def file_hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (files or directories), keyed by path."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def copy_project(src: Project, dest: Path) -> Project:
    """An independent copy of a project (files, outputs and its cache) under `dest`."""
    shutil.copytree(src.root, dest / "project", symlinks=True)
    shutil.copytree(cache_of(src), dest / "cache", symlinks=True)
    return Project(dest / "project", dest / "cache")


def stray_temps(*roots: Path) -> list[str]:
    """Temp files of atomic writes (`.<name>.<owner>.<random>.tmp`) left anywhere under `roots`."""
    return sorted(str(p) for root in roots if root.exists() for p in root.rglob(".*.tmp"))


def base_project(tmp: Path, params: dict = HARNESS) -> Project:
    return make_project(tmp, params, git=False)


_REFERENCE: dict = {}


def reference(tmp_path_factory, env: dict) -> tuple[Project, dict[str, float]]:
    """One uninterrupted run of the whole pipeline per test session (shared by the hostile-input and
    kill tests; never modified: copy it with `copy_project`). Returns it and each stage's wall time."""
    if "project" not in _REFERENCE:
        project = base_project(tmp_path_factory.mktemp("reference"))
        project.env.update(env)
        _REFERENCE["times"] = run_pipeline(project)
        _REFERENCE["project"] = project
    return _REFERENCE["project"], _REFERENCE["times"]
