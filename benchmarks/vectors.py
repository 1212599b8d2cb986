"""Precomputed vectors give the figures of encoding in place: Flickr8k's train and test
embeddings exported with `xmodal encode`, referenced by row from a manifest, benchmarked with
`xmodal bench`, against `xmodal bench flickr8k` (which encodes, through the cache).

Steps (all through the command line, files under ``--work``):

1. ``xmodal encode flickr8k --split S --modality M --encoder E --out M-S.npy`` for S in train,
   test and M in text (minilm), image (efficientnet-lite0);
2. a manifest declaring ``text`` and ``image`` as vector files (train rows then test rows),
   each item giving its rows (5 captions, 1 image);
3. ``xmodal bench vectors.jsonl`` and ``xmodal bench flickr8k``: every metric of every row
   compared at full precision.

    .venv/bin/python benchmarks/vectors.py
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k

ENCODERS = {"text": "minilm", "image": "efficientnet-lite0"}


def xmodal(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "xmodal.cli", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"xmodal {shlex.join(args)} failed:\n{done.stderr}")
    return done.stdout


def bench_rows(dataset: str, json_dir: Path, results: Path) -> list[tuple[str, int, dict[str, float]]]:
    xmodal("bench", dataset, "--results", str(results), "--json-dir", str(json_dir))
    (found,) = json_dir.glob("*.json")
    return [(r["aligner"], r["csls_k"], r["metrics"]) for r in json.loads(found.read_text())["rows"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".cache/xmodal/vectors"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    flickr = load_flickr8k()
    parts: dict[str, list[np.ndarray]] = {"text": [], "image": []}
    lines: list[dict] = [
        {
            "xmodal": "manifest",
            "modalities": {m: {"kind": "vector", "file": f"{m}.npy"} for m in ENCODERS},
        }
    ]
    offset = {"text": 0, "image": 0}
    for split in ("train", "test"):
        for modality, encoder in ENCODERS.items():
            out = args.work / f"{modality}-{split}.npy"
            xmodal(
                "encode", "flickr8k", "--split", split, "--modality", modality, "--encoder", encoder, "--out", str(out)
            )
            parts[modality].append(np.load(out))
        for item in flickr.split(split).items:
            rows = {}
            for modality in ENCODERS:
                n = len(item.values[modality])
                rows[modality] = list(range(offset[modality], offset[modality] + n))
                offset[modality] += n
            lines.append({"id": item.id, "split": split, "text": rows["text"], "image": rows["image"][0]})
    for modality, arrays in parts.items():
        np.save(args.work / f"{modality}.npy", np.concatenate(arrays))
    manifest = args.work / "vectors.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    scratch = args.work / "results"
    rows = {}
    for name, dataset in (("vectors", str(manifest)), ("in place", "flickr8k")):
        json_dir = args.work / f"json-{name.replace(' ', '-')}"
        for old in json_dir.glob("*.json"):
            old.unlink()
        rows[name] = bench_rows(dataset, json_dir, scratch)
    same = rows["vectors"] == rows["in place"]
    table = []
    for (aligner, k, vec), (_, _, ref) in zip(rows["vectors"], rows["in place"]):
        cells = [f"{vec[c]:.1f}" for c in ("t2i/R@10", "i2t/R@10")]
        table.append([aligner, f"k={k}" if k else "–", *cells, "yes" if vec == ref else "**no**"])
    write_section(
        args.results,
        "vectors",
        "Precomputed vectors against encoding in place (Flickr8k, minilm + efficientnet-lite0)",
        shlex.join(["python", "benchmarks/vectors.py", *sys.argv[1:]]),
        markdown_table(["aligner", "CSLS", "t2i R@10", "i2t R@10", "every metric identical"], table),
        f"{len(lines) - 1} items, {offset['text']} caption rows and {offset['image']} image rows in two .npy files; "
        f"{time.perf_counter() - started:.0f} s in all",
        notes=[f"All {len(table)} rows identical at full precision: **{'yes' if same else 'no'}**."],
        announce=False,
    )
    print(markdown_table(["aligner", "CSLS", "t2i R@10", "i2t R@10", "identical"], table))
    print(f"identical: {same}; updated {args.results}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
