"""The built-in corpus: deterministic, speaker-disjoint, and not separable by energy alone."""
from __future__ import annotations

import numpy as np

from antispoof import metrics, synthetic

CFG = {"speakers": 6, "attacks": 4, "utterances_per_speaker": 30, "spoof_fraction": 0.5, "min_seconds": 0.5, "max_seconds": 1.0}
RATIOS = {"train": 0.5, "dev": 0.25, "eval": 0.25}


def test_same_seed_same_audio_other_seed_other_audio():
    a = synthetic.synthesize(7, 2, 5, 0.8, "A03")
    assert np.array_equal(a, synthetic.synthesize(7, 2, 5, 0.8, "A03"))
    assert not np.array_equal(a, synthetic.synthesize(8, 2, 5, 0.8, "A03"))
    assert a.dtype == np.float32 and len(a) == 12800 and np.abs(a).max() <= 1


def test_plan_is_speaker_disjoint_and_has_every_attack():
    plan = synthetic.plan(7, CFG, RATIOS)
    by_speaker = plan.groupby("speaker")["split"].nunique()
    assert (by_speaker == 1).all()
    assert set(plan["split"]) == {"train", "dev", "eval"}
    assert set(plan.loc[plan.label == "spoof", "attack"]) == set(synthetic.ATTACKS)
    assert plan.equals(synthetic.plan(7, CFG, RATIOS))


def test_energy_alone_does_not_separate_the_classes():
    plan = synthetic.plan(3, CFG, RATIOS)
    log_energy = np.array([np.log(np.mean(synthetic.synthesize(3, r.speaker_index, r.index, r.seconds,
                                                                None if r.attack == "-" else r.attack) ** 2))
                           for r in plan.itertuples()])
    bona = plan["label"].to_numpy() == "bonafide"
    # Either direction of an energy threshold: both must leave EER >= 30 %.
    assert metrics.eer(log_energy[bona], log_energy[~bona]) >= 0.3
    assert metrics.eer(-log_energy[bona], -log_energy[~bona]) >= 0.3


def test_generate_writes_wavs_and_protocol(tmp_path):
    cfg = dict(CFG, speakers=3, utterances_per_speaker=2)
    protocol = synthetic.generate(tmp_path, 1, cfg, {"train": 0.34, "dev": 0.33, "eval": 0.33}, progress=False)
    assert len(protocol) == 6
    assert (tmp_path / "protocol.csv").read_text().startswith("path,label,split,speaker,attack\n")
    assert all((tmp_path / p).stat().st_size > 44 for p in protocol["path"])
