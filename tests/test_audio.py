"""antispoof.audio on real files written with soundfile (WAV, FLAC, 8 kHz, stereo, sub-second, empty)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from antispoof.audio import audio_info, fix_length, load_audio, max_offset, random_crop, read_native
from antispoof.errors import DataError


def _int16_tone(sr: int, seconds: float, freq: float = 440.0, amp: int = 12000) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_int16_wav_is_scaled_to_unit_range(tmp_path):
    x = np.array([0, 16384, -16384, 32767, -32768, 1], dtype=np.int16)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    y = load_audio(tmp_path / "a.wav", 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    np.testing.assert_array_equal(y, x.astype(np.float32) / 32768.0)
    assert y.min() >= -1.0 and y.max() < 1.0


def test_24bit_flac_is_scaled(tmp_path):
    x = np.array([0, 2**22, -(2**23), 2**23 - 1], dtype=np.int32) << 8  # 24-bit values in int32
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_24")
    y = load_audio(tmp_path / "a.flac")
    np.testing.assert_allclose(y, [0.0, 0.5, -1.0, (2**23 - 1) / 2**23], rtol=0, atol=1e-7)


def test_flac_and_wav_decode_identically(tmp_path):
    x = _int16_tone(16000, 0.5)
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_16")
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    a, b = load_audio(tmp_path / "a.flac", 16000), load_audio(tmp_path / "a.wav", 16000)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8000,)


def test_stereo_is_mixed_by_mean(tmp_path):
    left = np.array([0.5, 0.25, -0.5, 0.0], dtype=np.float32)
    right = np.array([0.0, 0.25, 0.5, -1.0], dtype=np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = load_audio(tmp_path / "s.wav", 16000)
    np.testing.assert_array_equal(y, np.array([0.25, 0.25, 0.0, -0.5], dtype=np.float32))
    samples, sr = read_native(tmp_path / "s.wav")
    assert samples.shape == (4, 2) and sr == 16000


def test_8khz_is_resampled_deterministically_and_keeps_pitch(tmp_path):
    sf.write(tmp_path / "n.wav", _int16_tone(8000, 1.0, freq=1000.0), 8000, subtype="PCM_16")
    y = load_audio(tmp_path / "n.wav", 16000)
    assert y.dtype == np.float32 and y.shape == (16000,)
    np.testing.assert_array_equal(y, load_audio(tmp_path / "n.wav", 16000))  # bit-identical
    spectrum = np.abs(np.fft.rfft(y[2000:14000] * np.hanning(12000)))
    peak_hz = np.argmax(spectrum) * 16000 / 12000
    assert abs(peak_hz - 1000.0) < 3.0
    # The resampled tone keeps its amplitude (~12000/32768) away from the edges.
    assert abs(np.max(np.abs(y[2000:14000])) - 12000 / 32768) < 0.01
    # Native rate when no target is given.
    assert load_audio(tmp_path / "n.wav").shape == (8000,)


def test_downsampling_length(tmp_path):
    sf.write(tmp_path / "h.flac", _int16_tone(44100, 0.3), 44100, subtype="PCM_16")
    y = load_audio(tmp_path / "h.flac", 16000)
    assert y.shape == (int(np.ceil(13230 * 16000 / 44100)),)


def test_subsecond_clip(tmp_path):
    sf.write(tmp_path / "short.flac", _int16_tone(16000, 0.1), 16000, subtype="PCM_16")
    y = load_audio(tmp_path / "short.flac", 16000)
    assert y.shape == (1600,)
    assert fix_length(y, 64600).shape == (64600,)


def test_audio_info_reads_header(tmp_path):
    x = np.zeros((1234, 2), dtype=np.int16)
    sf.write(tmp_path / "st.wav", x, 8000, subtype="PCM_16")
    assert audio_info(tmp_path / "st.wav") == (8000, 1234, 2)


def test_empty_file_names_the_file(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(DataError, match=r"empty\.wav.*empty"):
        load_audio(tmp_path / "empty.wav", 16000)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.wav: audio file not found"):
        load_audio(tmp_path / "nothere.wav")
    with pytest.raises(DataError, match=r"nothere\.wav: audio file not found"):
        audio_info(tmp_path / "nothere.wav")
    (tmp_path / "bad.flac").write_bytes(b"this is not audio at all")
    with pytest.raises(DataError, match=r"bad\.flac: cannot decode audio"):
        load_audio(tmp_path / "bad.flac")


def test_fix_length_centre_crop():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(x, 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(fix_length(x, 3), [3, 4, 5])  # (10-3)//2 = 3
    np.testing.assert_array_equal(fix_length(x, 10), x)
    assert fix_length(x, 10) is not x


def test_fix_length_short_clips_are_tiled_or_zero_padded():
    x = np.array([1, 2, 3], dtype=np.float32)
    np.testing.assert_array_equal(fix_length(x, 8), [1, 2, 3, 1, 2, 3, 1, 2])
    np.testing.assert_array_equal(fix_length(x, 8, "zero"), [1, 2, 3, 0, 0, 0, 0, 0])
    assert fix_length(x, 8).dtype == np.float32
    with pytest.raises(ValueError, match="pad mode"):
        fix_length(x, 8, "reflect")
    with pytest.raises(ValueError, match="empty"):
        fix_length(np.zeros(0, dtype=np.float32), 8)
    with pytest.raises(ValueError, match="1-D"):
        fix_length(np.zeros((2, 5), dtype=np.float32), 3)
    with pytest.raises(ValueError, match="positive"):
        fix_length(x, 0)


def test_random_crop_uses_given_offset():
    x = np.arange(10, dtype=np.float32)
    assert max_offset(10, 4) == 6 and max_offset(3, 4) == 0
    np.testing.assert_array_equal(random_crop(x, 4, 0), [0, 1, 2, 3])
    np.testing.assert_array_equal(random_crop(x, 4, 6), [6, 7, 8, 9])
    np.testing.assert_array_equal(random_crop(x, 4, 2), [2, 3, 4, 5])
    with pytest.raises(ValueError, match="out of range"):
        random_crop(x, 4, 7)
    with pytest.raises(ValueError, match="out of range"):
        random_crop(x, 4, -1)
    short = np.array([1, 2], dtype=np.float32)
    np.testing.assert_array_equal(random_crop(short, 5, 0), [1, 2, 1, 2, 1])
    with pytest.raises(ValueError, match="out of range"):
        random_crop(short, 5, 1)
