"""Every model and objective trained for real through `python -m antispoof.train` on the built-in corpus
(tiny sizes, short crops): a run SIGKILLed mid-epoch and resumed ends byte-identical to an uninterrupted
run (so two runs agree and resuming restores everything, the DANN λ position and the stopping state
included); and rawnet2, ssl and aasist_light each beat chance on the eval split after a short run."""
from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml
from scipy.stats import mannwhitneyu

from conftest import deep_update, make_project, run, tiny_params

# 120 utterances (5 steps of 8 per epoch), clean only, checkpoints every 3 steps; dev passes on 10
# utterances and fixed-length batched scoring (a new input length costs oneDNN a new kernel plan).
BASE = tiny_params(replicates=[0], data={"synthetic": {"utterances_per_speaker": 20}},
                   augment={"prob": 0, "train": ["mulaw"], "eval": []},
                   train={"epochs": 3, "checkpoint_every": 3, "lr": 0.003, "dev_max_utterances": 10},
                   evaluate={"crop_seconds": 0.5, "batch_size": 16})
CONFIGS = {
    "rawnet2": {"train": {"epochs": 2, "crop_seconds": 0.3}, "model": {"name": "rawnet2", "rawnet2": {
        "sinc_filters": 8, "sinc_length": 129, "block_channels": [8, 8, 16, 16, 16, 16], "gru_hidden": 16,
        "gru_layers": 1, "fc_hidden": 16}}},
    "aasist_light": {"train": {"epochs": 2, "crop_seconds": 0.3}, "model": {"name": "aasist_light"}},
    "ssl": {"train": {"epochs": 2}, "model": {"name": "ssl", "ssl": {"random_init": True, "weights": None}}},
    # DANN against codec domains (clean vs mu-law), with the memorisation guard tripping at epoch 2
    "lcnn-dann": {"augment": {"prob": 0.5}, "train": {"objective": "dann", "train_loss_threshold": 5.0,
                                                        "plateau_patience": 2}},
}
TRAIN_FILES = ("models/r0/model.pt", "models/r0/model.json", "metrics/train/r0.json", "plots/train/r0.csv")


def prepared_project(tmp, base: dict, configs: dict, bytecode_cache: dict):
    """A project with `base` params, prepared and codec-augmented, plus `<name>.yaml` = base + each config."""
    project = make_project(tmp, base, git=False)
    project.env.update(bytecode_cache)
    project.stage("prepare")
    project.stage("augment_cache")
    for name, over in configs.items():
        (project.root / f"{name}.yaml").write_text(yaml.safe_dump(deep_update(base, over), sort_keys=False))
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory, bytecode_cache):
    return prepared_project(tmp_path_factory.mktemp("models"), BASE, CONFIGS, bytecode_cache)


def stage(project, module: str, name: str, cache: str, kill_at: str | None = None):
    env = {**project.env, "ANTISPOOF_CACHE_DIR": str(project.root.parent / cache)}
    if kill_at:
        env["ANTISPOOF_TEST_KILL_AT"] = kill_at
    return run([sys.executable, "-m", f"antispoof.{module}", "--params", f"{name}.yaml", "--replicate", "0"],
               project.root, env, check=kill_at is None)


def train_outputs(project) -> dict[str, bytes]:
    return {f: (project.root / f).read_bytes() for f in TRAIN_FILES}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trains_resumes_after_a_kill_to_identical_bytes(project, name):
    proc = stage(project, "train", name, f"{name}-a")
    uninterrupted = train_outputs(project)
    metrics = json.loads(uninterrupted["metrics/train/r0.json"])["train_r0"]
    assert f"model {CONFIGS[name].get('model', {}).get('name', 'lcnn')}, " in proc.stderr
    assert metrics["parameters"] > 0 and metrics["steps"] == metrics["epochs"] * metrics["steps_per_epoch"]

    if name == "lcnn-dann":
        curves = (project.root / "plots/train/r0.csv").read_text().splitlines()
        assert curves[0] == "epoch,step,train_loss,dev_eer,domain_loss,domain_acc,dann_lambda"
        assert metrics["stop_reason"] == "memorisation_guard" and metrics["epochs"] == 2
        assert metrics["kept_epoch"] == metrics["best_epoch"] and 0 <= metrics["final_domain_acc"] <= 1

    for f in TRAIN_FILES:
        (project.root / f).unlink()
    killed = stage(project, "train", name, f"{name}-b", kill_at="4")  # mid-epoch 0, after step 3's checkpoint
    assert killed.returncode != 0 and not (project.root / TRAIN_FILES[0]).exists()
    resumed = stage(project, "train", name, f"{name}-b")
    assert "resuming from checkpoint at step 3 (epoch 0, batch 3)" in resumed.stderr
    assert train_outputs(project) == uninterrupted


# Beating chance needs a bigger eval split than the resume tests' 40 utterances to be a finding: 60 per
# speaker gives train/dev/eval 120 each. One dev pass (after the last epoch), few checkpoints.
CHANCE_BASE = deep_update(BASE, {"data": {"synthetic": {"utterances_per_speaker": 60}},
                                 "train": {"checkpoint_every": 1000, "dev_every": 100}})
# aasist_light learns more slowly, with a wider spread over seeds: 600 steps (cosine from lr 0.001), and
# 120 utterances per speaker, so that its eval split (240) tells an AUC of 0.6 from chance.
CHANCE_BASES = {"60": CHANCE_BASE,
                "120": deep_update(CHANCE_BASE, {"data": {"synthetic": {"utterances_per_speaker": 120}}})}
SHORT_RUNS = {  # name: (corpus, config); 15 (60) or 30 (120) steps of 8 per epoch
    "rawnet2": ("60", deep_update(CONFIGS["rawnet2"], {"train": {"epochs": 8, "crop_seconds": 0.5, "lr": 0.001}})),
    "ssl": ("60", deep_update(CONFIGS["ssl"], {"train": {"epochs": 8, "lr": 0.0005}})),
    "aasist_light": ("120", deep_update(CONFIGS["aasist_light"], {"train": {
        "epochs": 20, "crop_seconds": 0.5, "lr": 0.001, "schedule": "cosine"}})),
}


@pytest.fixture(scope="module")
def chance_projects(tmp_path_factory, bytecode_cache):
    """corpus -> its prepared project (built on first use), holding the configs that train on it."""
    made = {}

    def get(corpus: str):
        if corpus not in made:
            configs = {n: cfg for n, (c, cfg) in SHORT_RUNS.items() if c == corpus}
            made[corpus] = prepared_project(tmp_path_factory.mktemp(f"chance-{corpus}"), CHANCE_BASES[corpus],
                                            configs, bytecode_cache)
        return made[corpus]
    return get


@pytest.mark.parametrize("name", list(SHORT_RUNS))
def test_beats_chance_on_the_eval_split_after_a_short_run(chance_projects, name):
    """Beating chance = bona fide clips score higher than spoofed ones more often than a coin would say:
    a one-sided Mann-Whitney U test (AUC > 0.5) at p < 0.01 on the clean eval split, EER below 0.5."""
    project = chance_projects(SHORT_RUNS[name][0])
    stage(project, "train", name, "cache")
    stage(project, "evaluate", name, "cache")
    root = project.root
    scores = pd.read_csv(root / "scores/r0/clean.txt", sep=" ", names=["utt_id", "score"])
    manifest = pd.read_csv(root / "data/prepared/manifest.csv").set_index("utt_id")
    labels = manifest["label"]
    bona = scores["score"][scores["utt_id"].map(labels).eq("bonafide")]
    spoof = scores["score"][scores["utt_id"].map(labels).eq("spoof")]
    n_eval = int((manifest["split"] == "eval").sum())
    assert len(bona) + len(spoof) == len(scores) == n_eval >= 120
    assert len(bona) > n_eval / 3 and len(spoof) > n_eval / 3
    test = mannwhitneyu(bona, spoof, alternative="greater")
    eer = json.loads((root / "metrics/eval/r0.json").read_text())["eval_r0"]["clean"]["eer"]
    steps = json.loads((root / "metrics/train/r0.json").read_text())["train_r0"]["steps"]
    print(f"{name}: {steps} steps, eval EER {eer:.3f}, AUC {test.statistic / len(bona) / len(spoof):.3f}, p {test.pvalue:.2g}")
    assert test.pvalue < 0.01 and eer < 0.5, f"{name} did not beat chance: EER {eer:.3f}, p {test.pvalue:.3g}"
