"""Benchmark runners (text-image pairs, Flickr8k+Multi30k N modalities) and results writing.
Only the command line and the scripts under ``benchmarks/`` import this package."""
