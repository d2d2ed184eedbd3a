"""benchmarks/gpu_check.py's CPU-testable parts (the comparison, its line, the commands, the kill/resume
driver on a tiny project with device cpu, the throughput timer) and seeding's deterministic CUDA
settings, which are plain flags that can be read on a machine without CUDA."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_params

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402

TINY_CPU = tiny_params(augment={"prob": 0, "train": [], "eval": []},
                       data={"synthetic": {"speakers": 4, "utterances_per_speaker": 8}})


def test_differing_names_changed_and_missing_outputs_and_the_line_says_yes_only_when_identical():
    a = {"models/r0/model.pt": b"\x00\x01", "metrics/train/r0.json": b"{}"}
    assert gpu_check.differing(a, dict(a)) == []
    assert gpu_check.differing(a, {**a, "models/r0/model.pt": b"\x00\x02"}) == ["models/r0/model.pt"]
    assert gpu_check.differing(a, {"models/r0/model.pt": b"\x00\x01"}) == ["metrics/train/r0.json"]
    line = gpu_check.result_line(True, False, {"lcnn": 1234.56, "other": None})
    assert line == "gpu_check: identical=yes resumed_identical=no samples_per_s=lcnn:1234.6,other:failed"


def test_commands_are_the_stage_clis_and_the_check_trains_replicate_0_on_the_device():
    assert gpu_check.train_command(0) == [sys.executable, "-m", "antispoof.train", "--replicate", "0"]
    assert gpu_check.stage_command("augment_cache") == [sys.executable, "-m", "antispoof.augment_cache"]
    params = tiny_params()
    checked = gpu_check.check_params(params, "cuda")
    assert checked["replicates"] == [0] and checked["runtime"]["device"] == "cuda"
    assert params["runtime"]["device"] == "cpu" and params["replicates"] == [0, 1]  # input untouched
    assert {k: v for k, v in checked.items() if k not in ("replicates", "runtime")} == \
        {k: v for k, v in params.items() if k not in ("replicates", "runtime")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would really run")
def test_without_cuda_it_says_so_on_one_line_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("gpu_check: CUDA is not available")
    assert "nothing was checked" in out and "identical" not in out


def test_kill_and_resume_driver_on_cpu_gives_the_uninterrupted_runs_bytes(tmp_path):
    project = gpu_check.CheckProject.create(tmp_path, gpu_check.check_params(TINY_CPU, "cpu"), tmp_path / "shared")
    project.prepare()
    first = project.train_outputs("first")
    assert sorted(first) == sorted(gpu_check.OUTPUTS)
    steps = gpu_check.trained_steps(first)
    kill_step = steps // 2 + 1
    resumed, from_step = gpu_check.kill_and_resume(project, kill_step)
    assert 0 < from_step < kill_step < steps
    assert gpu_check.differing(first, resumed) == []
    # each run has a resume store of its own; the decoded audio is shared
    caches = tmp_path / "caches"
    assert sorted(p.name for p in caches.iterdir()) == ["first", "killed"]
    for run in ("first", "killed"):
        assert len([d for d in (caches / run / "checkpoints").iterdir() if d.is_dir()]) == 1
        assert (caches / run / "audio").resolve() == (tmp_path / "shared" / "audio").resolve()
    assert list((tmp_path / "shared" / "audio").rglob("*.pcm"))


def test_samples_per_second_times_training_steps_of_a_registered_model_on_cpu():
    params = TINY_CPU
    rate = gpu_check.samples_per_second(params["model"], params["data"]["sample_rate"], 4, 1e-3, "cpu",
                                        steps=2, warmup=1)
    assert math.isfinite(rate) and rate > 0


_SETTINGS = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from antispoof.repro.seeding import seed_everything

    def flags():
        return {"cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                "benchmark": torch.backends.cudnn.benchmark,
                "cudnn_deterministic": torch.backends.cudnn.deterministic,
                "algorithms": torch.are_deterministic_algorithms_enabled(),
                "inductor_loaded": "torch._inductor.config" in sys.modules}

    out = {"before": flags()}
    seed_everything(1, True, 1)
    out["deterministic"] = flags()
    seed_everything(1, False, 1)
    out["free"] = flags()
    import torch._inductor.config as inductor    # someone loaded inductor: its flag follows too
    seed_everything(1, True, 1)
    out["inductor_deterministic"] = inductor.deterministic
    print(json.dumps(out))
    """
)


def test_deterministic_settings_cublas_workspace_no_tf32_no_benchmark_and_no_inductor_import():
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", _SETTINGS], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"]["cublas"] is None and out["before"]["cudnn_tf32"] is True  # torch's defaults
    assert out["deterministic"] == {"cublas": ":4096:8", "matmul_tf32": False, "cudnn_tf32": False,
                                    "benchmark": False, "cudnn_deterministic": True, "algorithms": True,
                                    "inductor_loaded": False}
    assert out["free"] == {"cublas": ":4096:8", "matmul_tf32": False, "cudnn_tf32": True, "benchmark": True,
                           "cudnn_deterministic": False, "algorithms": False, "inductor_loaded": False}
    assert out["inductor_deterministic"] is True
