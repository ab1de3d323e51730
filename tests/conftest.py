import os
from pathlib import Path

import pytest

from pipeline.numerics import pin

# The kernels and threads `python -m pipeline` pins, before any test loads torch: otherwise this
# process ran unpinned kernels while workers, forked from a server started under a test's pinned
# settings, ran pinned ones (a Whisper vector differed from the same one made here by 5e-6).
pin()

ROOT = Path(__file__).resolve().parents[1]

# Real public data beside the project (never committed); DIMMN_SHARED_DATA points elsewhere.
SHARED_DATA = Path(os.environ.get("DIMMN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (set DIMMN_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """One generated dialogue of three real .mp4 clips, and its manifest as ingest reads it."""
    from pipeline.datasets import read_dataset
    from pipeline.demo.corpus import DemoConfig, generate

    root = tmp_path_factory.mktemp("tiny_corpus")
    generate(root, DemoConfig(dialogues=1, min_turns=3, max_turns=3, seed=3), progress=False)
    return root, read_dataset("demo", root)
