"""The default detector: LFCC front-end dimensions, any-length scoring, the LLR-like score."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from antispoof.errors import ParamError
from antispoof.models import BONAFIDE, SPOOF, build_model, scores_from_logits, select_device
from antispoof.models.lcnn import LFCC, MaxPool2x2
from signals import speechlike

PARAMS = {"name": "lcnn", "lcnn": {"crop_samples": 16000, "n_lfcc": 20, "n_filter": 20, "channels": [8, 8, 8], "dropout": 0.2}}


def test_lfcc_has_statics_deltas_and_delta_deltas():
    feats = LFCC(16000, n_lfcc=20, n_filter=20)(torch.randn(2, 16000))
    assert feats.shape == (2, 60, 101)  # 10-ms hop, centred frames
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("samples", [4000, 16000, 37123])
def test_scores_any_length(samples):
    torch.manual_seed(0)
    model = build_model(PARAMS, 16000).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, samples))
    assert logits.shape == (1, 2)


def test_score_is_bonafide_minus_spoof_logit():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    assert BONAFIDE == 0 and SPOOF == 1
    assert scores_from_logits(logits).tolist() == [3.0, -2.5]


def test_same_seed_same_initial_weights():
    torch.manual_seed(5)
    a = build_model(PARAMS, 16000).state_dict()
    torch.manual_seed(5)
    b = build_model(PARAMS, 16000).state_dict()
    torch.manual_seed(6)
    c = build_model(PARAMS, 16000).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_cuda_requested_without_cuda_is_a_param_error():
    if torch.cuda.is_available():
        assert select_device("cuda").type == "cuda"
    else:
        with pytest.raises(ParamError, match="runtime.device"):
            select_device("cuda")
    assert select_device("cpu").type == "cpu"


def _clips() -> torch.Tensor:
    """1-s clips at very different levels: loud, -60 dB with a stretch of digital silence, -100 dB."""
    quiet = speechlike(16000, 2) * 1e-3
    quiet[:5000] = 0
    return torch.from_numpy(np.stack([speechlike(16000, 1), quiet, speechlike(16000, 3) * 1e-5]))


def test_eval_features_of_one_clip_are_torchaudios_bit_for_bit():
    """The eval front-end (per-clip dB floor, magnitude in the STFT's memory order) and max pooling give
    one clip exactly the values of torchaudio's LFCC and nn.MaxPool2d: batch_size 1 scores do not move."""
    lfcc = LFCC(16000, n_lfcc=20, n_filter=20).eval()
    for x in _clips():
        for n in (16000, 3001):
            wave = x[None, :n]
            assert torch.equal(lfcc.lfcc_per_clip(wave), lfcc.lfcc(wave))
    h = torch.randn(3, 4, 31, 52)
    assert torch.equal(MaxPool2x2().eval()(h), torch.nn.functional.max_pool2d(h, 2))


def test_a_clips_eval_score_does_not_depend_on_the_clips_batched_with_it():
    """torchaudio floors dB energies 80 dB below the loudest clip of a batch: in eval mode each clip has
    its own floor, so a quiet clip scores the same alone and next to a loud one (within float32 rounding)."""
    torch.manual_seed(0)
    model = build_model(PARAMS, 16000).eval()
    x = _clips()
    with torch.no_grad():
        alone = torch.cat([scores_from_logits(model(c[None])) for c in x])
        together = scores_from_logits(model(x))
    assert torch.max(torch.abs(alone - together)) <= 1e-5, (alone, together)
