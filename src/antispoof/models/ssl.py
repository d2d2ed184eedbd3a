"""`ssl`: a self-supervised speech encoder from Hugging Face `transformers` (WavLM, wav2vec 2.0 / XLS-R)
with a learned softmax-weighted sum of all its hidden layers, and a back-end:

- `linear`: mean and standard deviation over time (the embedding) -> linear;
- `aasist`: the AASIST graph back-end on the SSL features, after Tak et al., "Automatic speaker
  verification spoofing and deepfake detection using wav2vec 2.0 and data augmentation" (Odyssey 2022):
  linear projection to `proj_dim` -> (proj_dim x frames) map -> max-pool 3x3, BN, SELU -> 2-D residual
  blocks without time pooling (SSL frames are already 20 ms) -> aasist.GraphBackend -> dropout -> linear.
  (That paper pools the graph nodes with attention; this back-end keeps AASIST's max pooling.)

The encoder comes from a local directory in Hugging Face format (`model.ssl.weights`, loaded with
`local_files_only=True`: nothing is downloaded), or is built with random weights from that directory's
config.json or, without a directory, from `model.ssl.random_config` (a small architecture for smoke
tests and CPU runs).

Determinism: the encoder's training-time randomness that does not come from torch's global RNG is
switched off: SpecAugment-style time/feature masking (drawn with numpy in `transformers`) and LayerDrop
(off so that every step runs every layer). Dropout stays, drawn from torch's seeded RNG like every
other model's. With `freeze: all` the encoder stays in eval mode (no dropout): a fixed feature extractor.

`transformers` is imported only when an `ssl` model is built: the other models' stages do not pay its
import time.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from antispoof.errors import ParamError
from antispoof.models import ModelSpec, register, repeat_to_length
from antispoof.models.aasist import GRAPH_SCHEMA, READOUT_DROPOUT, GraphBackend, SpectroTemporalEncoder
from antispoof.schema import INT, Field, length_between

FAMILIES = ("wavlm", "wav2vec2")  # config.json model_type values this module knows how to freeze and load
POS_CONV_GROUPS = 16  # transformers' default for both families
# Training-time randomness outside torch's global RNG (and LayerDrop), off for every encoder we build
# (apply_spec_augment: false skips the masking but keeps a checkpoint's mask embedding, so it loads whole).
DETERMINISTIC_OVERRIDES = {"apply_spec_augment": False, "layerdrop": 0.0}


# ---- params checks (run by params validation, and again at build) ----

def _check_freeze(value, key: str) -> None:
    if isinstance(value, str) and value not in ("all", "none"):
        raise ParamError(key, f"{value!r} is not one of all, none, or a number of transformer layers (0, 1, ...)")
    if isinstance(value, int) and value < 0:
        raise ParamError(key, f"{value!r} is below the minimum 0 (frozen transformer layers)")


def weights_config(weights: str) -> dict:
    """The config.json of a local Hugging Face model directory, checked; ParamError naming
    `model.ssl.weights` if the directory or its config is missing or of another model family."""
    key, path = "model.ssl.weights", Path(weights)
    if not path.is_dir():
        raise ParamError(key, f"{weights}: no such directory; give a local Hugging Face model directory "
                         "(config.json + weights, e.g. saved with save_pretrained or `hf download "
                         "microsoft/wavlm-base-plus --local-dir <dir>`), or null with random_init: true")
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamError(key, f"{config_file}: missing: {weights} is not a Hugging Face model directory") from None
    except (OSError, ValueError) as e:
        raise ParamError(key, f"{config_file}: unreadable ({e})") from None
    if config.get("model_type") not in FAMILIES:
        raise ParamError(key, f"{config_file}: model_type {config.get('model_type')!r} is not one of "
                         f"{', '.join(FAMILIES)}")
    return config


def _check_random_config(rc: dict, where: str) -> None:
    if rc["hidden_size"] % rc["num_heads"]:
        raise ParamError(f"{where}.num_heads", f"{rc['num_heads']} does not divide hidden_size {rc['hidden_size']}")
    if rc["hidden_size"] % POS_CONV_GROUPS:
        raise ParamError(f"{where}.hidden_size", f"must be a multiple of {POS_CONV_GROUPS} (the groups of the "
                         f"positional convolution), got {rc['hidden_size']}")


def _check_section(section: dict, where: str) -> None:
    if section["weights"] is None:
        if not section["random_init"]:
            raise ParamError(f"{where}.weights", "is null and random_init is false: give a local Hugging Face "
                             "model directory, or set random_init: true to train from random weights "
                             f"(architecture from {where}.random_config)")
    else:
        weights_config(section["weights"])


# ---- the encoder ----

def build_encoder(p: dict) -> nn.Module:
    """The `transformers` model (WavLMModel / Wav2Vec2Model) that `p` (the ssl section) describes."""
    _check_section(p, "model.ssl")
    from transformers import AutoConfig, AutoModel, Wav2Vec2Config, WavLMConfig

    # Eager attention: the reference implementation, deterministic on CPU. float32 whatever the
    # checkpoint was saved in (transformers would otherwise load a float16 checkpoint as float16).
    options = {"attn_implementation": "eager", "dtype": torch.float32}
    if p["weights"] is not None and not p["random_init"]:
        return AutoModel.from_pretrained(p["weights"], local_files_only=True, **options, **DETERMINISTIC_OVERRIDES)
    if p["weights"] is not None:
        config = AutoConfig.from_pretrained(p["weights"], local_files_only=True, **DETERMINISTIC_OVERRIDES)
    else:
        rc = p["random_config"]
        config_class = WavLMConfig if rc["family"] == "wavlm" else Wav2Vec2Config
        config = config_class(hidden_size=rc["hidden_size"], num_hidden_layers=rc["num_layers"],
                              num_attention_heads=rc["num_heads"], intermediate_size=rc["intermediate_size"],
                              conv_dim=(rc["conv_channels"],) * 7,
                              num_conv_pos_embedding_groups=POS_CONV_GROUPS, mask_time_prob=0.0,  # no mask embedding
                              **DETERMINISTIC_OVERRIDES)
    return AutoModel.from_config(config, **options)  # weights from torch's global RNG


def _frames_geometry(config) -> tuple[int, int]:
    """(receptive field, hop) in samples of the encoder's convolutional front-end."""
    receptive, hop = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        receptive += (kernel - 1) * hop
        hop *= stride
    return receptive, hop


def _freeze(encoder: nn.Module, freeze: str | int) -> None:
    """all: every encoder parameter; K: the convolutional feature encoder, its projection and the
    positional convolution (everything before the first transformer layer), plus layers 0..K-1."""
    if freeze == "none":
        return
    n_layers = len(encoder.encoder.layers)
    if freeze == "all":
        frozen = [encoder]
    else:
        if freeze > n_layers:
            raise ParamError("model.ssl.freeze", f"{freeze} is more than the encoder's {n_layers} transformer "
                             "layers (use all to freeze everything)")
        frozen = [encoder.feature_extractor, encoder.feature_projection, encoder.encoder.pos_conv_embed,
                  *encoder.encoder.layers[:freeze]]
    for module in frozen:
        module.requires_grad_(False)


class SSLDetector(nn.Module):
    def __init__(self, p: dict, sample_rate: int):
        super().__init__()
        preprocessor = _preprocessor_config(p)
        expected_rate = int(preprocessor.get("sampling_rate", 16000))
        if p["weights"] is not None and sample_rate != expected_rate:
            raise ParamError("data.sample_rate", f"is {sample_rate} but the encoder in {p['weights']} expects "
                             f"{expected_rate} Hz audio: set data.sample_rate to {expected_rate}")
        self.encoder = build_encoder(p)
        config = self.encoder.config
        _freeze(self.encoder, p["freeze"])
        self.frozen = p["freeze"] == "all"
        # auto: as the checkpoint's feature extractor (preprocessor_config.json do_normalize), else off.
        normalize = p["normalize_input"]
        self.normalize = bool(preprocessor.get("do_normalize", False)) if normalize == "auto" else normalize
        # Softmax weights over the embedding output and every transformer layer, uniform at the start.
        self.layer_logits = nn.Parameter(torch.zeros(config.num_hidden_layers + 1))
        self.backend_name = p["backend"]
        receptive, hop = _frames_geometry(config)
        hidden = config.hidden_size
        if self.backend_name == "linear":
            self.backend = None
            self.embedding_dim = 2 * hidden
            self.drop = nn.Identity()
            min_frames = 2
        else:
            a = p["aasist"]
            self.proj = nn.Linear(hidden, a["proj_dim"])
            self.backend_encoder = SpectroTemporalEncoder(a["encoder_channels"], time_pool=1, magnitude=False)
            self.backend = GraphBackend(a["encoder_channels"][-1], a["proj_dim"] // 3, a["gat_dims"],
                                        a["pool_ratios"], a["temperatures"])
            self.embedding_dim = self.backend.embedding_dim
            self.drop = nn.Dropout(READOUT_DROPOUT)
            min_frames = 3  # the 3x3 max-pool
        self.head = nn.Linear(self.embedding_dim, 2)
        self.min_samples = receptive + (min_frames - 1) * hop

    def train(self, mode: bool = True) -> "SSLDetector":
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, frames, hidden): the softmax-weighted sum of all hidden layers."""
        wave = repeat_to_length(wave, self.min_samples)
        if self.normalize:  # per utterance, as the checkpoint's feature extractor does
            wave = (wave - wave.mean(dim=1, keepdim=True)) / torch.sqrt(wave.var(dim=1, keepdim=True) + 1e-7)
        hidden = self.encoder(wave, output_hidden_states=True).hidden_states
        weights = torch.softmax(self.layer_logits, dim=0)
        return torch.einsum("l,lbth->bth", weights, torch.stack(hidden))

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        h = self.features(wave)
        if self.backend is None:
            return torch.cat([h.mean(dim=1), h.std(dim=1)], dim=1)
        x = self.proj(h).transpose(1, 2)  # (B, proj_dim, frames): projected features as a spectrogram
        return self.backend(self.backend_encoder(x))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(embedding))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(wave))


def _preprocessor_config(p: dict) -> dict:
    """The checkpoint's preprocessor_config.json (input sample rate, normalisation); {} if it has none."""
    if p["weights"] is None:
        return {}
    path = Path(p["weights"]) / "preprocessor_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ParamError("model.ssl.weights", f"{path}: unreadable ({e})") from None


SCHEMA = {
    "crop_samples": Field(INT, min=160, max=10**7),
    "weights": Field((str,), nullable=True),
    "random_init": Field((bool,)),
    "random_config": {
        "family": Field((str,), choices=FAMILIES),
        "hidden_size": Field(INT, min=1, max=8192),
        "num_layers": Field(INT, min=1, max=128),
        "num_heads": Field(INT, min=1, max=128),
        "intermediate_size": Field(INT, min=1, max=65536),
        "conv_channels": Field(INT, min=1, max=4096),
        "__check__": _check_random_config,
    },
    "normalize_input": Field((str, bool), choices=("auto", True, False)),
    "freeze": Field((str, int), check=_check_freeze),
    "backend": Field((str,), choices=("linear", "aasist")),
    "aasist": {
        "proj_dim": Field(INT, min=3, max=4096),  # the spectral graph has proj_dim // 3 nodes
        "encoder_channels": Field((list,), items=Field(INT, min=1, max=1024), check=length_between(1, 8)),
        **GRAPH_SCHEMA,
    },
    "__check__": _check_section,
}


def weights_files(section: dict) -> dict[str, Path]:
    """The files of `weights` that a build reads: config.json alone with random_init, else every file
    of the directory (hidden directories such as a download tool's .cache aside), by relative path."""
    if section["weights"] is None:
        return {}
    root = Path(section["weights"])
    if section["random_init"]:
        return {"config.json": root / "config.json"}
    return {f.relative_to(root).as_posix(): f for f in sorted(root.rglob("*"))
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts[:-1])}


SPEC = register(ModelSpec(
    "ssl", SCHEMA, SSLDetector,
    "pretrained SSL encoder (WavLM / wav2vec 2.0 / XLS-R via transformers), weighted layer sum, linear or AASIST back-end",
    weights_files,
))
