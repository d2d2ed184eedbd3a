"""Shared fixtures: a real project copy in a temporary git repository, driven through the real CLIs."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Two test files run at once (xdist), each starting stages with 2 torch (OpenMP) threads on 2 cores:
# libgomp's default is to spin-wait between parallel regions, so oversubscribed threads burn the
# cores the other file needs (measured: two tiny `dvc repro` side by side, 51.6 s of CPU each
# spinning, 27.3 s passive). Passive waiting changes when an idle thread sleeps, never a result.
# Set before anything imports torch, here and in every subprocess (they inherit os.environ).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: dvc and python live here

# Small enough for CI (seconds per stage), big enough that every stage does real work.
TINY = {
    "replicates": [0, 1],
    "data": {"synthetic": {"speakers": 6, "attacks": 4, "utterances_per_speaker": 14, "spoof_fraction": 0.5,
                           "min_seconds": 0.6, "max_seconds": 1.0},
             "split_ratios": {"train": 0.5, "dev": 0.25, "eval": 0.25}},
    "augment": {"train": ["mp3:24k"], "eval": ["mulaw"], "num_shards": 4},
    "model": {"lcnn": {"channels": [8, 8]}},
    "train": {"epochs": 2, "batch_size": 8, "crop_seconds": 0.5, "checkpoint_every": 3},
}


def deep_update(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(**overrides) -> dict:
    return deep_update(deep_update(default_params(), TINY), overrides)


def run(args: list[str], cwd: Path, env: dict | None = None, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class Project:
    """A copy of this project (code, dvc.yaml, params) in its own git repository."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.env = {**os.environ, "ANTISPOOF_CACHE_DIR": str(cache), "PYTHONPATH": str(root / "src"),
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
                    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}

    def write_params(self, params: dict) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return run(list(args), self.root, self.env, check=check, timeout=timeout)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "dvc"), *args, check=check)

    def stage(self, module: str, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", f"antispoof.{module}", *args, check=check, timeout=timeout)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


def make_project(tmp: Path, params: dict, git: bool = True) -> Project:
    root = tmp / "project"
    root.mkdir(parents=True)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    if (REPO / ".dvc" / "plots").exists():
        shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")
    project = Project(root, tmp / "cache")
    project.write_params(params)
    if git:
        project.run("git", "init", "-q", "-b", "main")
        project.commit("project")
    return project


@pytest.fixture
def tiny_project(tmp_path: Path) -> Project:
    return make_project(tmp_path, tiny_params())


@pytest.fixture(scope="session")
def bytecode_cache(tmp_path_factory) -> dict:
    """Env overrides for stage subprocesses: cache compiled bytecode in a session temp dir. Where the shell
    sets PYTHONDONTWRITEBYTECODE=1, every `python -m antispoof.*` would otherwise recompile torch's Python
    sources (~5 s each). Use: `project.env.update(bytecode_cache)`. Changes speed only, never results."""
    return {"PYTHONPYCACHEPREFIX": str(tmp_path_factory.mktemp("pycache")), "PYTHONDONTWRITEBYTECODE": ""}
