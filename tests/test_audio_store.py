"""The decoded-audio store and the streaming readers built on it (data.SplitClips, dev subset, batched scoring).

Expected values are recomputed independently: audio through `audio.load_audio` (the decoder the store
replaces), subsets through hashlib directly, one-at-a-time scores through the model itself.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from antispoof.audio import load_audio, read_native
from antispoof.audio_store import HEADER_SIZE, AudioStore, audio_key
from antispoof.data import ScoringBatches, SplitClips, dev_subset
from antispoof.errors import DataError
from antispoof.models import build_model, scores_from_logits
from antispoof.repro import audio_hash
from signals import speechlike

SR = 16000


def corpus(root: Path) -> pd.DataFrame:
    """Rows as the prepare stage writes them, for a 16-bit WAV, a float stereo FLAC at 16 kHz and a 22.05 kHz
    file (resampled to 16 kHz)."""
    files = [("a.wav", speechlike(9000, 1)[:, None], SR, "PCM_16"),
             ("b.flac", np.stack([speechlike(7001, 2), speechlike(7001, 3)], axis=1) * 0.5, SR, "PCM_24"),
             ("c.wav", speechlike(11025, 4)[:, None], 22050, "FLOAT")]
    rows = []
    for name, x, sr, subtype in files:
        sf.write(root / name, x, sr, subtype=subtype)
        native, rate = read_native(root / name)
        rows.append({"utt_id": name.split(".")[0], "path": name, "label": "bonafide" if name < "c" else "spoof",
                     "split": "eval", "duration": round(native.shape[0] / rate, 6), "sample_rate": rate,
                     "sha256": audio_hash(native, rate)})
    return pd.DataFrame(rows)


def test_clips_equal_the_decoder_bit_for_bit_and_are_decoded_once(tmp_path):
    rows = corpus(tmp_path)
    store = AudioStore(tmp_path / "store")
    clips = SplitClips(rows, tmp_path, SR, store)
    for i, name in enumerate(rows["path"]):
        expected = load_audio(tmp_path / name, SR)
        assert clips.lengths[i] == expected.shape[0]
        assert clips[i].dtype == np.float32 and clips[i].tobytes() == expected.tobytes()
    entries = sorted((tmp_path / "store").glob("*/*.pcm"))
    assert len(entries) == 3
    sizes = {p.stem: p.stat().st_size - HEADER_SIZE for p in entries}
    assert sizes[clips.keys[0].decode()] == 2 * 9000  # 16-bit PCM at its own rate: stored as int16
    assert sizes[clips.keys[2].decode()] == 4 * clips.lengths[2]  # resampled: float32
    # The sources are no longer needed: a fresh reader (another process, in effect) maps the entries.
    for name in rows["path"]:
        (tmp_path / name).unlink()
    again = SplitClips(rows, tmp_path, SR, AudioStore(tmp_path / "store"))
    assert all(again[i].tobytes() == clips[i].tobytes() for i in range(3))
    view = again.view(0)
    assert isinstance(view, np.memmap) and not view.flags.writeable


def test_the_key_covers_content_and_rate_not_the_file_name():
    sha = "ab" * 32
    assert audio_key(sha, 16000, 16000) != audio_key(sha, 16000, 8000)
    assert audio_key(sha, 16000, 16000) != audio_key("cd" * 32, 16000, 16000)
    assert audio_key(sha, 22050, 16000) != audio_key(sha, 16000, 16000)  # resampled: resampler in the key


def test_a_corrupt_entry_is_reported_once_re_decoded_and_never_used(tmp_path, capfd):
    rows = corpus(tmp_path)
    store = AudioStore(tmp_path / "store")
    clean = [x.tobytes() for x in SplitClips(rows, tmp_path, SR, store)]
    capfd.readouterr()
    path = store.path(audio_key(rows["sha256"][1], SR, SR))
    blob = bytearray(path.read_bytes())
    blob[HEADER_SIZE + 100] ^= 0x40  # one flipped bit in the payload: same size, bad checksum
    path.write_bytes(bytes(blob))

    clips = SplitClips(rows, tmp_path, SR, AudioStore(tmp_path / "store"))
    assert [clips[i].tobytes() for i in range(3)] == clean
    assert [clips[i].tobytes() for i in range(3)] == clean  # read again in the same process
    err = capfd.readouterr().err
    assert err.count("is corrupt (") == 1 and str(path) in err and "checksum mismatch" in err and "b.flac" in err
    assert path.read_bytes() != bytes(blob)  # replaced by the re-decoded entry
    SplitClips(rows, tmp_path, SR, AudioStore(tmp_path / "store"))[1]
    assert capfd.readouterr().err == ""


def test_a_truncated_entry_is_caught_even_after_its_checksum_was_verified(tmp_path, capfd):
    rows = corpus(tmp_path)
    clips = SplitClips(rows, tmp_path, SR, AudioStore(tmp_path / "store"))
    expected = clips[0].tobytes()
    path = clips.store.path(clips.keys[0].decode())
    path.write_bytes(path.read_bytes()[:-2])
    assert clips[0].tobytes() == expected  # size is checked on every open, not only the first
    assert "does not match its header" in capfd.readouterr().err


@pytest.mark.parametrize("crop", [None, 4000, 8500])
def test_scoring_reads_exactly_the_decoded_evaluation_window(tmp_path, capfd, crop):
    """Scoring reads only each clip's window from the store, converting int16 after cutting: the bits of
    the decoder's audio centre-cropped (or tiled) by audio.fix_length, on the first (checksummed) read and
    after it, alone and in a batch; a corrupt entry is caught on this path too."""
    from antispoof.audio import fix_length
    from antispoof.scoring import ScoringInputs

    rows = corpus(tmp_path)
    filled = SplitClips(rows, tmp_path, SR, AudioStore(tmp_path / "store"))
    [filled[i] for i in range(3)]
    expected = [load_audio(tmp_path / name, SR) for name in rows["path"]]
    expected = [x if crop is None else fix_length(x, crop) for x in expected]
    clips = SplitClips(rows, tmp_path, SR, AudioStore(tmp_path / "store"))  # a fresh reader: verifies again
    path = clips.store.path(clips.keys[0].decode())  # a.wav: stored as int16
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x08
    path.write_bytes(bytes(blob))
    capfd.readouterr()
    inputs = ScoringInputs(clips, clips.lengths, crop)
    for _ in range(2):  # verified on the first read of each clip, not after
        for i in range(3):
            got = inputs[[i]]
            assert got.dtype == torch.float32 and got.numpy()[0].tobytes() == expected[i].tobytes()
    err = capfd.readouterr().err
    assert err.count("is corrupt (checksum mismatch)") == 1 and "a.wav" in err
    if crop is not None:
        assert inputs[[2, 0, 1]].numpy().tobytes() == np.stack([expected[i] for i in (2, 0, 1)]).tobytes()


def test_a_source_changed_after_prepare_is_an_error_naming_the_file(tmp_path):
    rows = corpus(tmp_path)
    sf.write(tmp_path / "a.wav", speechlike(9000, 99), SR, subtype="PCM_16")
    with pytest.raises(DataError, match=r"a\.wav: audio differs from the manifest's sha256"):
        SplitClips(rows, tmp_path, SR, AudioStore(tmp_path / "store"))[0]


def test_dev_subset_is_stratified_by_label_and_chosen_by_hashed_id():
    ids = np.array([f"D{i:04d}" for i in range(300)])
    labels = np.array([0] * 60 + [1] * 240)
    picked = dev_subset(ids, labels, 50)
    assert list(picked) == sorted(picked) and len(picked) == 50
    # 20 % bona fide in the split and in the subset; each label's members: the smallest sha256(utt_id)
    rank = {u: int(hashlib.sha256(u.encode()).hexdigest()[:16], 16) for u in ids}
    for label, k in ((0, 10), (1, 40)):
        expected = sorted(sorted(ids[labels == label], key=rank.get)[:k])
        assert sorted(ids[picked][labels[picked] == label]) == expected
    assert list(dev_subset(ids, labels, None)) == list(range(300))
    assert list(dev_subset(ids, labels, 1000)) == list(range(300))
    tiny = dev_subset(ids, np.array([0] + [1] * 299), 2)  # a rare class still gets one
    assert sorted(labels[tiny].tolist()) == [0, 1] and 0 in tiny


def test_scoring_batches_group_equal_lengths_and_cover_every_clip_once():
    lengths = np.array([5, 3, 5, 5, 3, 7, 5, 3])
    batches = [list(b) for b in ScoringBatches(lengths, None, 2)]
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) <= 2 and len(set(lengths[b])) == 1 for b in batches)
    assert batches[0] == [0, 2] and batches[1] == [3, 6]  # first-appearance order, manifest order inside
    cropped = [list(b) for b in ScoringBatches(lengths, 4, 3)]
    assert cropped == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [list(b) for b in ScoringBatches(lengths, None, 1)] == [[i] for i in range(8)]


def test_batched_scores_are_within_1e5_of_one_at_a_time_and_independent_of_workers(tmp_path):
    from antispoof.scoring import score_utterances

    torch.manual_seed(0)
    model = build_model({"name": "lcnn", "lcnn": {"crop_samples": 16000, "n_lfcc": 20, "n_filter": 20, "channels": [8, 8], "dropout": 0.2}}, SR)
    for m in model.modules():  # trained-looking normalisation statistics
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_(0, 1)
            m.running_var.uniform_(0.5, 2)
    rng = np.random.default_rng(0)
    clips = [speechlike(int(n), int(s)) for n, s in zip(rng.choice([6000, 8000, 9000], 20), rng.integers(0, 1 << 30, 20))]
    with torch.no_grad():
        model.eval()
        single = np.array([scores_from_logits(model(torch.from_numpy(x)[None]))[0].item() for x in clips])
        crop_single = np.array([scores_from_logits(model(torch.from_numpy(np.resize(x, 8000)[None] if len(x) < 8000
                                                                      else x[(len(x) - 8000) // 2:][:8000][None])))[0].item()
                                for x in clips])
    full = score_utterances(model, clips, None, 8)
    assert np.array_equal(score_utterances(model, clips, None, 1), single)  # batch 1: the same bits
    assert np.max(np.abs(full - single)) <= 1e-5
    cropped = score_utterances(model, clips, 8000, 8)
    assert np.max(np.abs(cropped - crop_single)) <= 1e-5
    assert score_utterances(model, clips, 8000, 8, num_workers=2).tobytes() == cropped.tobytes()
    assert score_utterances(model, clips, 8000, 8).tobytes() == cropped.tobytes()
