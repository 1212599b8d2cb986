"""The speech encoder on real recordings: Tux Paint's spoken descriptions (``make tuxpaint``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from xmodal.encoders import EncoderError, get_encoder
from xmodal.encoders.audio import SAMPLE_RATE, load_audio

STAMPS = Path("usr/share/tuxpaint/stamps")


@pytest.fixture(scope="module")
def clips(tuxpaint) -> list[str]:
    found = (
        sorted((tuxpaint / STAMPS).rglob("*_desc_fr.ogg"))[:3] + sorted((tuxpaint / STAMPS).rglob("*_desc_es.ogg"))[:1]
    )
    assert len(found) == 4, "the Tux Paint package has French and Spanish recordings"
    return [str(p) for p in found]


@pytest.fixture(scope="module")
def whisper(models_dir):
    return get_encoder("whisper-base", models_dir=models_dir)


@pytest.mark.data
@pytest.mark.weights
def test_real_clips_give_distinct_deterministic_embeddings(whisper, clips):
    rows = whisper.encode(clips)
    assert rows.shape == (4, 512) and rows.dtype == np.float32 and np.isfinite(rows).all()
    np.testing.assert_allclose(whisper.encode(clips[:1]), rows[:1], rtol=1e-5, atol=1e-5)  # deterministic
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert (similarity[~np.eye(4, dtype=bool)] < 0.999).all()  # different clips, different rows
    assert whisper.modality == "audio" and whisper.dim == 512 and "whisper-base|ct2-int8" in whisper.cache_key


@pytest.mark.data
def test_clips_are_decoded_to_16_khz_mono(clips):
    samples = load_audio(clips[0])
    info = soundfile.info(clips[0])
    assert samples.ndim == 1 and samples.dtype == np.float32
    assert abs(len(samples) / SAMPLE_RATE - info.duration) < 0.01


@pytest.mark.weights
def test_bad_audio_is_a_clear_error_naming_the_file(whisper, tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE)
    corrupt = tmp_path / "corrupt.ogg"
    corrupt.write_bytes(b"OggS" + bytes(range(256)) * 8)
    for path, message in [
        (silent, f"{silent}: the audio is silent"),
        (corrupt, f"cannot read audio {corrupt}"),
        (tmp_path / "gone.ogg", f"audio file not found: {tmp_path / 'gone.ogg'}"),
    ]:
        with pytest.raises(EncoderError, match=message.replace(".", r"\.")):
            whisper.encode([str(path)])


@pytest.mark.data
@pytest.mark.weights
def test_a_manifest_with_speech_is_encoded_once_through_the_cache(clips, models_dir, tmp_path, xmodal):
    import json

    lines = [{"id": f"s{i}", "text.fr": f"phrase {i}", "audio.fr": clip} for i, clip in enumerate(clips[:3])]
    manifest = tmp_path / "speech.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    command = ["encode", manifest, "--modality", "audio.fr", "--encoder", "whisper-base", "--cache", tmp_path / "c",
               "--models", models_dir, "--out", tmp_path / "a.npy"]  # fmt: skip
    first = xmodal(*command)
    assert first.exit_code == 0, first.output
    assert "3 audio.fr embeddings of dimension 512 (0 from the cache, 3 encoded)" in " ".join(first.output.split())
    again = xmodal(*command)
    assert "(3 from the cache, 0 encoded)" in " ".join(again.output.split())
    assert np.load(tmp_path / "a.npy").shape == (3, 512)
