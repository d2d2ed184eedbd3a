"""The evaluate stage's malloc settings (antispoof.allocator): batched scoring stops page-faulting its
working set on every batch, and no score changes. Each case runs in its own process (the settings are
process-wide)."""
from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json, resource, sys
import numpy as np, torch
from antispoof.allocator import retain_freed_memory
from antispoof.models import build_model
from antispoof.scoring import score_utterances

accepted = retain_freed_memory() if sys.argv[1] == "retain" else None
torch.manual_seed(0)
model = build_model({"name": "lcnn", "lcnn": {"crop_samples": 16000, "n_lfcc": 20, "n_filter": 20,
                     "channels": [16, 24, 32], "dropout": 0.2}}, 16000).eval()
rng = np.random.default_rng(0)
clips = [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(64)]
faults = []
for _ in range(6):  # the first passes grow the heap to its peak; the last ones show the steady state
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    scores = score_utterances(model, clips, crop=16000, batch_size=32)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"accepted": accepted, "faults": faults, "scores": scores.tolist()}))
"""


def score_in_process(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_batched_scoring_stops_page_faulting_and_scores_do_not_change():
    default, retained = score_in_process("default"), score_in_process("retain")
    assert retained["accepted"] is True
    # Without the settings every batch of 32 faults its megabytes of intermediates in again.
    steady_default, steady_retained = default["faults"][-3:], retained["faults"][-3:]
    assert min(steady_default) > 32 * 20, default["faults"]
    # Median: a stray arena resize can fault a few hundred pages in one pass (seen under load).
    assert np.median(steady_retained) < min(steady_default) / 20, (default["faults"], retained["faults"])
    assert np.array_equal(np.array(default["scores"]), np.array(retained["scores"]))
