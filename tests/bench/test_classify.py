"""The zero-shot classification runner's pure parts: prompts, class-names files, modalities."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from xmodal.bench.classify import _modalities, class_prompts, load_class_names
from xmodal.data import DataError


def test_prompts_fill_every_template_with_every_name():
    prompts, owner = class_prompts(["animals", "food"], ["{}", "a picture of {}."], {"animals": ["animal", "bird"]})
    assert prompts == ["animal", "a picture of animal.", "bird", "a picture of bird.", "food", "a picture of food."]
    assert owner.tolist() == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize(
    ("templates", "names", "message"),
    [
        (["a picture"], None, "template 'a picture' has no {} where the class name goes"),
        ([], None, "give at least one template"),
        (["{}"], {"animal": ["animal"]}, "class names are given for 'animal', which is not a class; classes: animals"),
    ],
)
def test_prompt_errors(templates, names, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        class_prompts(["animals"], templates, names)


def test_class_names_file(tmp_path):
    path = tmp_path / "names.json"
    path.write_text('{"naturalforces": " natural force ", "animals": ["animal", "bird"]}')
    assert load_class_names(path) == {"naturalforces": ["natural force"], "animals": ["animal", "bird"]}
    with pytest.raises(DataError, match="cannot read .*missing.json"):
        load_class_names(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}', "the names of 'a' must be a non-empty string or list of them, got 1"),
        ('{"a": []}', "the names of 'a' must be"),
        ('{"a": [""]}', "the names of 'a' must be"),
        ('["a"]', "expected a JSON object mapping labels to names, got list"),
        ('{\n"a": }', ":2: invalid JSON"),
    ],
)
def test_class_names_errors(tmp_path, content, message):
    path = tmp_path / "names.json"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)):
        load_class_names(path)


def encoders(**kinds: str) -> dict:
    return {modality: SimpleNamespace(modality=kind) for modality, kind in kinds.items()}


def test_modalities_default_to_the_text_one_and_the_image():
    assert _modalities(encoders(**{"text.en": "text", "image": "image"}), None, None) == ("text.en", "image")
    three = encoders(**{"text.en": "text", "audio.fr": "audio", "image": "image"})
    assert _modalities(three, None, None) == ("text.en", "image")
    assert _modalities(three, None, "audio.fr") == ("text.en", "audio.fr")
    assert _modalities(encoders(text="text", **{"text.fr": "text"}), "text", None) == ("text", "text.fr")


@pytest.mark.parametrize(
    ("kinds", "text", "query", "message"),
    [
        ({"text": "text", "image": "image"}, None, "audio.fr", "--query-modality audio.fr: the model has no such"),
        ({"text": "text", "image": "image"}, "image", None, "--text-modality image: its encoder reads image, not text"),
        ({"text.en": "text", "text.fr": "text", "image": "image"}, None, None, "several (text.en, text.fr)"),
        ({"audio.fr": "audio", "image": "image"}, None, None, "class prompts: none"),
        ({"text": "text", "audio.fr": "audio", "vector": "vector"}, None, None, "one of audio.fr, vector"),
    ],
)
def test_modality_errors(kinds, text, query, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _modalities(encoders(**kinds), text, query)
