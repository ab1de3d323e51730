"""Dataset readers, looked up by format name: each turns a dataset's own layout into a manifest."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.manifest import ManifestError, read_generic


def read_demo(root, **_) -> pd.DataFrame:
    """The built-in demo corpus (``python -m pipeline demo``): the generic layout plus its labels."""
    root = Path(root)
    info_path = root / "corpus.json"
    if not info_path.is_file():
        raise ManifestError(f"{info_path}: not a demo corpus (run `python -m pipeline demo` first)")
    labels = json.loads(info_path.read_text())["labels"]
    return read_generic(root / "manifest.csv", root, labels=labels, dataset="demo")


def read_generic_root(root, csv=None, labels=None, dataset=None, **_) -> pd.DataFrame:
    """A folder of clips plus a CSV (``manifest.csv`` in the folder unless ``csv`` names another)."""
    root = Path(root)
    return read_generic(Path(csv) if csv else root / "manifest.csv", root, labels=labels or None, dataset=dataset)


READERS = {"demo": read_demo, "generic": read_generic_root}


def read_dataset(fmt: str, root, **options) -> pd.DataFrame:
    if fmt not in READERS:
        raise ManifestError(f"unknown dataset format {fmt!r}; known: {sorted(READERS)}")
    return READERS[fmt](root, **options)

