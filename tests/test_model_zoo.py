"""The model zoo beyond lcnn (rawnet2, aasist, aasist_light, ssl): the model contract (two logits, embed ->
classify, any input length), deterministic construction and training, published AASIST sizes, and the
SSL encoder's loading, freezing and errors. Tiny sizes and short inputs keep it cheap."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from antispoof.errors import ParamError
from antispoof.models import REGISTRY, build_model, parameter_count
from antispoof.params import load_params, validate
from conftest import REPO, default_params, deep_update

SR = 16000
TINY = {
    "rawnet2": {"crop_samples": 8000, "sinc_filters": 8, "sinc_length": 32, "block_channels": [4, 4, 8, 8],
                "gru_hidden": 8, "gru_layers": 2, "fc_hidden": 8},
    "aasist": {"crop_samples": 8000, "sinc_filters": 12, "sinc_length": 16, "encoder_channels": [4, 4, 8],
               "gat_dims": [8, 6]},
    "aasist_light": {},  # its params.yaml defaults are small already
    "ssl": {"random_init": True, "random_config": {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "intermediate_size": 32,
                              "conv_channels": 8}},
    "ssl_aasist": {"random_init": True, "random_config": {"family": "wav2vec2", "hidden_size": 16, "num_layers": 2, "num_heads": 2,
                                     "intermediate_size": 32, "conv_channels": 8},
                   "backend": "aasist",
                   "aasist": {"proj_dim": 12, "encoder_channels": [4, 8], "gat_dims": [8, 8]}},
}
MODELS = [case for case in TINY if case != "aasist_light"]  # the same class as aasist: its entry is built once


def model_params(case: str, **overrides) -> dict:
    """`{"name": n, n: section}`: params.yaml's section of model n with the tiny sizes of `case`,
    checked against the model's schema."""
    name = "ssl" if case.startswith("ssl") else case
    section = deep_update(deep_update(default_params()["model"][name], TINY[case]), overrides)
    validate(section, REGISTRY[name].schema, f"model.{name}.")
    return {"name": name, name: section}


def build(case: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_params(case, **overrides), SR)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models run thousands of tiny kernels (GRU steps, graph attention); with two threads on a
    # shared machine each one waits for the other thread to be scheduled (20x slower here).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def waves(batch: int, samples: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.mark.parametrize("case", list(TINY))
def test_two_logits_and_forward_is_classify_of_embed(case):
    model = build(case).eval()
    x = waves(3, 8000)
    with torch.no_grad():
        logits, embedding = model(x), model.embed(x)
        assert logits.shape == (3, 2) and embedding.shape == (3, model.embedding_dim)
        assert torch.isfinite(logits).all()
        assert torch.equal(model.classify(embedding), logits)
        # Each utterance is scored on its own (no batch statistics at evaluation).
        assert torch.allclose(model(x[1:2]), logits[1:2], atol=1e-5)


@pytest.mark.parametrize("case", MODELS)
def test_any_length_at_evaluation(case):
    model = build(case).eval()
    with torch.no_grad():
        for samples in (8000, 12345):
            assert model(waves(1, samples)).shape == (1, 2)
        # Shorter than the pooling pyramid needs: scored as the clip tiled from its start to that length.
        n = model.min_samples * 2 // 3
        short = waves(1, n)
        tiled = short.repeat(1, 2)[:, :model.min_samples]
        assert torch.equal(model(short), model(tiled))


def two_training_steps(case: str, seed: int) -> tuple[list[float], dict]:
    model = build(case, seed).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(2):
        x, y = waves(2, 8000, seed=100 + step), torch.tensor([0, 1])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("case", MODELS)
def test_same_seed_same_weights_and_same_training(case, deterministic):
    a, b, c = (build(case, seed).state_dict() for seed in (5, 5, 6))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())

    # Randomness drawn outside torch's seeded RNG (numpy, Python's random) would make the runs differ.
    np.random.seed(1)
    losses1, state1 = two_training_steps(case, seed=3)
    np.random.seed(2)
    losses2, state2 = two_training_steps(case, seed=3)
    assert losses1 == losses2
    assert all(torch.equal(state1[k], state2[k]) for k in state1)
    initial = build(case, seed=3).state_dict()
    assert any(not torch.equal(initial[k], state1[k]) for k in state1 if state1[k].is_floating_point())


def test_aasist_default_size_is_the_published_one():
    # Published: 297,866 parameters (AASIST paper: "297K"; the same number from instantiating
    # clovaai/aasist models/AASIST.py with config/AASIST.conf), and 85,306 for AASIST-L (clovaai/aasist
    # README). Those counts include the residual blocks' pre-activation BatchNorm, whose output the
    # published code discards and which this implementation leaves out: 2 x its input channels for
    # every block but the first.
    count = parameter_count(build_model(default_params()["model"] | {"name": "aasist"}, SR))
    print(f"aasist at params.yaml defaults: {count:,} parameters")
    assert count == 297_866 - 2 * (32 + 32 + 64 + 64 + 64)
    light = model_params("aasist", sinc_filters=70, sinc_length=128, encoder_channels=[32, 32, 24, 24, 24, 24],
                         gat_dims=[24, 32], pool_ratios=[0.4, 0.5, 0.7])
    assert parameter_count(build_model(light, SR)) == 85_306 - 2 * (32 + 32 + 24 + 24 + 24)


def test_sinc_filters_pass_their_mel_band():
    # Band edges equally spaced on the mel scale from 0 to Nyquist (computed here independently).
    model = build("rawnet2", sinc_filters=16, sinc_length=1024)
    filters = model.sinc.filters.squeeze(1).numpy()
    assert filters.shape == (16, 1025)  # an even length becomes the next odd one
    mel_max = 2595 * np.log10(1 + (SR / 2) / 700)
    edges = 700 * (10 ** (np.linspace(0, mel_max, 17) / 2595) - 1)
    response = np.abs(np.fft.rfft(filters, n=8192, axis=1))
    freqs = np.fft.rfftfreq(8192, 1 / SR)
    for i, h in enumerate(response):
        centre = (edges[i] + edges[i + 1]) / 2
        assert h[np.argmin(np.abs(freqs - centre))] == pytest.approx(1.0, abs=0.1)  # pass band: unit gain
        outside = (freqs < edges[i] - 200) | (freqs > edges[i + 1] + 200)
        assert h[outside].max() < 0.1  # stop band


# ---- ssl: loading from a local directory, freezing, errors ----

def saved_wavlm(tmp_path) -> tuple[str, dict]:
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(11)
    encoder = WavLMModel(WavLMConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                     conv_dim=(8,) * 7))
    path = tmp_path / "wavlm-tiny"
    encoder.save_pretrained(path)
    return str(path), {k: v.clone() for k, v in encoder.state_dict().items()}


def test_ssl_loads_the_weights_of_a_local_directory(tmp_path):
    path, saved = saved_wavlm(tmp_path)
    model = build("ssl", weights=path, random_init=False)
    loaded = model.encoder.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert len(model.layer_logits) == 3  # the CNN output and both transformer layers

    # random_init: that directory's architecture, fresh weights from torch's RNG.
    fresh = build("ssl", seed=4, weights=path, random_init=True).encoder.state_dict()
    assert fresh.keys() == saved.keys()
    assert not torch.equal(fresh["encoder.layers.0.attention.q_proj.weight"], saved["encoder.layers.0.attention.q_proj.weight"])

    # The checked params path: a valid params file naming that directory.
    write_params(tmp_path, weights=path, random_init=False)


def test_ssl_float16_checkpoint_loads_as_float32(tmp_path):
    from transformers import WavLMConfig, WavLMModel

    encoder = WavLMModel(WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                     conv_dim=(8,) * 7)).half()
    encoder.save_pretrained(tmp_path / "half")
    loaded = build("ssl", weights=str(tmp_path / "half"), random_init=False).encoder.state_dict()
    for key, value in encoder.state_dict().items():
        assert loaded[key].dtype == torch.float32 and torch.equal(loaded[key], value.float())


def write_params(tmp_path, **ssl) -> dict:
    params = deep_update(default_params(), {"model": {"name": "ssl", "ssl": ssl}})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return load_params(path)


def test_ssl_freeze_modes(tmp_path):
    def trainable(model):
        return {n for n, p in model.named_parameters() if p.requires_grad}

    everything = build("ssl", freeze="none")
    assert trainable(everything) == {n for n, _ in everything.named_parameters()}
    frozen = build("ssl", freeze="all")
    assert trainable(frozen) == {"layer_logits", "head.weight", "head.bias"}
    assert not frozen.train().encoder.training  # a frozen encoder is a fixed feature extractor: no dropout

    model = build("ssl", freeze=1)
    names = trainable(model)
    for prefix in ("encoder.feature_extractor.", "encoder.feature_projection.", "encoder.encoder.pos_conv_embed.",
                   "encoder.encoder.layers.0."):
        assert not any(n.startswith(prefix) for n in names), prefix
    assert any(n.startswith("encoder.encoder.layers.1.") for n in names)
    # A training step moves the trainable layer and leaves the frozen one as it was.
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.nn.functional.cross_entropy(model.train()(waves(2, 8000)), torch.tensor([0, 1])).backward()
    optimizer.step()
    after = model.state_dict()
    for layer, moved in ((0, False), (1, True)):
        key = f"encoder.encoder.layers.{layer}.feed_forward.output_dense.weight"
        assert (not torch.equal(before[key], after[key])) == moved

    with pytest.raises(ParamError, match="model.ssl.freeze: 3 is more than the encoder's 2"):
        build("ssl", freeze=3)


@pytest.mark.parametrize("ssl, key, words", [
    ({"weights": None, "random_init": False}, "model.ssl.weights", "set random_init: true"),
    ({"weights": "no/such/dir", "random_init": False}, "model.ssl.weights", "no/such/dir: no such directory"),
    ({"weights": "no/such/dir", "random_init": True}, "model.ssl.weights", "no/such/dir: no such directory"),
    ({"freeze": "some"}, "model.ssl.freeze", "not one of all, none"),
    ({"freeze": -1}, "model.ssl.freeze", "below the minimum"),
    ({"random_config": {"num_heads": 3}}, "model.ssl.random_config.num_heads", "does not divide"),
])
def test_ssl_bad_params_fail_validation_naming_the_key(tmp_path, ssl, key, words):
    with pytest.raises(ParamError) as err:
        write_params(tmp_path, **ssl)
    assert err.value.key == key and words in str(err.value)


def test_ssl_errors_at_build(tmp_path):
    # build_model checks too (it may be called without a validated params file).
    with pytest.raises(ParamError, match="model.ssl.weights: .*set random_init: true"):
        build("ssl", weights=None, random_init=False)
    with pytest.raises(ParamError, match="model.ssl.weights: missing/dir: no such directory"):
        build("ssl", weights="missing/dir", random_init=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParamError, match="config.json: missing"):
        build("ssl", weights=str(tmp_path / "empty"), random_init=False)
    path, _ = saved_wavlm(tmp_path)
    with pytest.raises(ParamError, match="data.sample_rate: is 8000 but the encoder .* expects 16000"):
        build_model(model_params("ssl", weights=path, random_init=False), 8000)


def test_ssl_weights_files_enter_the_run_fingerprint_and_other_models_keep_theirs(tmp_path):
    """A checkpoint must never resume onto other pretrained weights: the bytes of the weights directory
    are part of an ssl run's fingerprint (config.json alone with random_init); lcnn's has no such key."""
    from antispoof.train import run_fingerprint

    path, _ = saved_wavlm(tmp_path)
    (Path(path) / ".cache").mkdir()
    (Path(path) / ".cache" / "download.lock").write_text("a download tool's bookkeeping")
    params = write_params(tmp_path, weights=path, random_init=False)
    fp = run_fingerprint(params, 1)
    assert sorted(fp["model_files"]) == sorted(f.name for f in Path(path).iterdir() if f.is_file())
    assert "config.json" in fp["model_files"] and len(fp["model_files"]) >= 2
    weights = next(f for f in Path(path).iterdir() if f.suffix in (".safetensors", ".bin"))
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    changed = run_fingerprint(params, 1)
    assert changed["model_files"][weights.name] != fp["model_files"][weights.name]
    assert changed["model_files"]["config.json"] == fp["model_files"]["config.json"]

    random_init = write_params(tmp_path, weights=path, random_init=True)
    assert list(run_fingerprint(random_init, 1)["model_files"]) == ["config.json"]
    lcnn = load_params(REPO / "params.yaml")
    assert "model_files" not in run_fingerprint(lcnn, 1)
