"""GPU check: does training on CUDA give the same bytes twice, and after a kill and a resume? How many
training samples per second does each model take?

    uv run python benchmarks/gpu_check.py [--device cuda] [--params params.yaml] [--workdir DIR]

In a temporary copy of the project (src/, dvc.yaml, the params file with `replicates: [0]` and
`runtime.device` set to --device), through the real CLIs:
1. `python -m antispoof.prepare` and (when `augment.prob` > 0) `python -m antispoof.augment_cache`; decoded
   audio and codec variants go to the shared cache ($ANTISPOOF_CACHE_DIR, default ~/.cache/antispoof):
   it is content-addressed, so sharing it changes no result;
2. `python -m antispoof.train --replicate 0` twice, each run with a resume store of its own (a cache
   directory per run whose audio/ and variants/ link to the shared ones, so the second run cannot simply
   reuse the first's final checkpoint), and compares the outputs byte for byte: models/r0/model.pt,
   models/r0/model.json, metrics/train/r0.json, plots/train/r0.csv;
3. a third run is SIGKILLed right after the optimisation step halfway through the run, before its
   checkpoint (train.py's ANTISPOOF_TEST_KILL_AT hook: an exact point, like a power cut, so the progress
   since the last checkpoint is lost), then run again: it resumes from its last checkpoint and must give
   the first run's bytes;
4. training samples/s of every registered model (antispoof.models.REGISTRY) at its size in the params
   file, on --device: forward, backward and Adam step on a batch of `train.batch_size` crops of the
   model's `crop_samples`, under the params' determinism settings. The model's compute only: the data
   loader's speed is benchmarks/train.py's business.
Prints one line, and exits 0 only when both comparisons found identical bytes:
    gpu_check: identical=yes resumed_identical=yes samples_per_s=lcnn:1234.5
Where CUDA is not available (and --device is cuda) it prints one line saying so and exits 0: nothing was
checked. `--device cpu` runs the same check on the CPU.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("models/r0/model.pt", "models/r0/model.json", "metrics/train/r0.json", "plots/train/r0.csv")
RESUMED = re.compile(r"train r0: resuming from checkpoint at step (\d+) ")
SHARED_PARTS = ("audio", "variants")  # cache parts every run may share (content-addressed)


class CheckFailed(Exception):
    """A step of the check did not do what it must (a stage failed, a kill did not happen, ...)."""


def stage_command(module: str, *args: str) -> list[str]:
    """The real CLI of a stage: `python -m antispoof.<module> ...` with this interpreter."""
    return [sys.executable, "-m", f"antispoof.{module}", *args]


def train_command(replicate: int = 0) -> list[str]:
    return stage_command("train", "--replicate", str(replicate))


def check_params(params: dict, device: str) -> dict:
    """The params of the check: replicate 0 only, on `device`; everything else as given."""
    out = copy.deepcopy(params)
    out["replicates"] = [0]
    out["runtime"]["device"] = device
    return out


def differing(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    """Output files whose bytes differ between two runs, or that only one run wrote."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def result_line(identical: bool, resumed_identical: bool, rates: dict[str, float | None]) -> str:
    """The check's one line; a model whose timing failed shows `failed`."""
    yes = {True: "yes", False: "no"}
    per_model = ",".join(f"{name}:{'failed' if rate is None else f'{rate:.1f}'}" for name, rate in rates.items())
    return f"gpu_check: identical={yes[identical]} resumed_identical={yes[resumed_identical]} samples_per_s={per_model}"


class CheckProject:
    """A copy of the project in `root` whose stages run with a shared cache for decoded audio and codec
    variants and, per training run, a cache directory (hence a resume store) of their own."""

    def __init__(self, root: Path, shared_cache: Path):
        self.root, self.shared_cache = Path(root), Path(shared_cache)

    @classmethod
    def create(cls, dest: Path, params: dict, shared_cache: Path, source: Path = ROOT) -> "CheckProject":
        root = Path(dest) / "project"
        root.mkdir(parents=True)
        shutil.copytree(source / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(source / "dvc.yaml", root / "dvc.yaml")
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return cls(root, shared_cache)

    @property
    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def run_cache(self, name: str) -> Path:
        """The cache directory of run `name`: its own checkpoints/, the shared audio/ and variants/."""
        cache = self.root.parent / "caches" / name
        cache.mkdir(parents=True, exist_ok=True)
        for part in SHARED_PARTS:
            (self.shared_cache / part).mkdir(parents=True, exist_ok=True)
            if not (cache / part).exists():
                (cache / part).symlink_to(self.shared_cache / part, target_is_directory=True)
        return cache

    def env(self, cache: Path, kill_at: str | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "ANTISPOOF_TEST_KILL_AT"}
        env.update(ANTISPOOF_CACHE_DIR=str(cache), PYTHONPATH=str(self.root / "src"))
        if kill_at is not None:
            env["ANTISPOOF_TEST_KILL_AT"] = kill_at
        return env

    def run(self, cmd: list[str], cache: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=self.root, env=self.env(cache, kill_at), capture_output=True, text=True)

    def prepare(self) -> None:
        """prepare and, if training draws codec variants, augment-cache (shared cache)."""
        modules = ["prepare"] + (["augment_cache"] if self.params["augment"]["prob"] > 0 else [])
        for module in modules:
            proc = self.run(stage_command(module), self.shared_cache)
            if proc.returncode != 0:
                raise CheckFailed(f"{module} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")

    def outputs(self) -> dict[str, bytes]:
        return {name: (self.root / name).read_bytes() for name in OUTPUTS if (self.root / name).exists()}

    def clear_outputs(self) -> None:
        for name in OUTPUTS:
            (self.root / name).unlink(missing_ok=True)

    def train(self, run: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
        """Train replicate 0 from no outputs, in run `run`'s resume store."""
        self.clear_outputs()
        return self.run(train_command(0), self.run_cache(run), kill_at)

    def train_outputs(self, run: str) -> dict[str, bytes]:
        """Train to the end (run `run`); the outputs' bytes."""
        proc = self.train(run)
        if proc.returncode != 0:
            raise CheckFailed(f"train ({run}) failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return self.outputs()


def trained_steps(outputs: dict[str, bytes]) -> int:
    """Optimisation steps of a finished run (from its metrics/train/r0.json)."""
    return int(json.loads(outputs["metrics/train/r0.json"])["train_r0"]["steps"])


def kill_and_resume(project: CheckProject, kill_step: int, run: str = "killed") -> tuple[dict[str, bytes], int]:
    """Train with a SIGKILL right after optimisation step `kill_step` (before its checkpoint), then train
    again in the same resume store. Returns the outputs and the step the second run resumed from."""
    killed = project.train(run, kill_at=f"{kill_step}:before")
    if killed.returncode != -signal.SIGKILL:
        raise CheckFailed(f"train was to be killed at step {kill_step} but exited with {killed.returncode}: "
                          f"{killed.stderr.strip()[-2000:]}")
    if project.outputs():
        raise CheckFailed(f"the run killed at step {kill_step} wrote outputs: {sorted(project.outputs())}")
    resumed = project.train(run)
    if resumed.returncode != 0:
        raise CheckFailed(f"train after the kill failed ({resumed.returncode}): {resumed.stderr.strip()[-2000:]}")
    m = RESUMED.search(resumed.stderr)
    if m is None or int(m.group(1)) >= kill_step:
        raise CheckFailed(f"train after the kill at step {kill_step} did not resume from an earlier checkpoint: "
                          f"{resumed.stderr.strip()[-2000:]}")
    return project.outputs(), int(m.group(1))


def samples_per_second(model_params: dict, sample_rate: int, batch_size: int, lr: float, device: str,
                       steps: int = 20, warmup: int = 3) -> float:
    """Training samples/s of the model `model_params` selects (forward, backward, Adam step) on batches
    of its `crop_samples` of noise, after `warmup` untimed steps."""
    from antispoof.models import build_model, crop_samples

    dev = torch.device(device)
    model = build_model(model_params, sample_rate).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    x = (0.1 * torch.randn(batch_size, crop_samples(model_params), generator=g)).to(dev)
    y = (torch.arange(batch_size) % 2).to(dev)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch_size * steps / (time.perf_counter() - start)


def model_rates(params: dict, device: str, steps: int) -> dict[str, float | None]:
    """samples/s of every registered model at its size in `params`; None (and the reason on stderr) for
    a model that fails, e.g. an op without a deterministic CUDA implementation."""
    from antispoof.models import REGISTRY
    from antispoof.repro.seeding import seed_everything

    seed_everything(params["seed"], params["deterministic"], params["num_threads"])
    tp = params["train"]
    rates: dict[str, float | None] = {}
    for name in REGISTRY:
        try:
            model = {**params["model"], "name": name}
            if name == "ssl" and model["ssl"]["weights"] is None:  # no pretrained weights ship here
                model["ssl"] = {**model["ssl"], "random_init": True}
            rates[name] = samples_per_second(model, params["data"]["sample_rate"],
                                             tp["batch_size"], tp["lr"], device, steps=steps)
        except RuntimeError as e:
            print(f"gpu_check: timing model {name} failed: {e}".splitlines()[0], file=sys.stderr)
            rates[name] = None
    return rates


def check(params: dict, device: str, workdir: Path, shared_cache: Path,
          throughput_steps: int = 20) -> tuple[bool, bool, dict[str, float | None]]:
    """Steps 1-4 of the module docstring; (identical, resumed_identical, samples/s per model)."""
    project = CheckProject.create(workdir, check_params(params, device), shared_cache)
    project.prepare()
    first = project.train_outputs("first")
    second = project.train_outputs("second")
    kill_step = trained_steps(first) // 2 + 1
    resumed, from_step = kill_and_resume(project, kill_step)
    for label, diff in (("second run", differing(first, second)), ("killed and resumed run", differing(first, resumed))):
        if diff:
            print(f"gpu_check: the {label} differs from the first in {', '.join(diff)}", file=sys.stderr)
    print(f"gpu_check: killed after step {kill_step} of {trained_steps(first)}, resumed from step {from_step}",
          file=sys.stderr)
    rates = model_rates(params, device, throughput_steps)
    return not differing(first, second), not differing(first, resumed), rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="params file (default: the project's)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the project copy and run caches here")
    ap.add_argument("--throughput-steps", type=int, default=20, help="timed training steps per model")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available here (torch {torch.__version__}, no CUDA device), "
              "so nothing was checked")
        return 0
    from antispoof.repro import cache_dir

    params = yaml.safe_load(args.params.read_text())
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        workdir = args.workdir or Path(tmp)
        try:
            identical, resumed_identical, rates = check(params, args.device, workdir, cache_dir(),
                                                        args.throughput_steps)
        except CheckFailed as e:
            print(f"gpu_check: failed: {' '.join(str(e).split())}")  # one line
            return 1
    print(result_line(identical, resumed_identical, rates))
    return 0 if identical and resumed_identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
