"""The built-in demo corpus: two-speaker dialogues of real H.264/AAC clips (``data/demo``)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.artifacts import check_writable
from pipeline.params import configs, params_file, section


@dataclass(frozen=True)
class DemoStage:
    workers: int = 1   # processes; the corpus is byte-identical for any count


def run(out, params_path, dialogues=None, seed=None, workers=None):
    from pipeline.demo.corpus import DemoConfig, generate

    flags = {"dialogues": dialogues, "seed": seed, "workers": workers}
    # the command line's values are checked as the params' are (--dialogues 0 is an error, not an empty corpus)
    values = {**section("demo", params_path), **{k: v for k, v in flags.items() if v is not None}}
    config, stage = configs("demo", values, DemoConfig, DemoStage)
    out = Path(out)
    check_writable(unrecorded=[out / "manifest.csv", out / "corpus.json"], folders=[out / "clips"],
                   inputs=[params_file(params_path)])
    start = time.time()
    manifest = generate(out, config, workers=stage.workers)
    print(f"demo: {len(manifest)} clips in {manifest['dialogue_id'].nunique()} dialogues "
          f"-> {out} ({time.time() - start:.1f}s)")
    return manifest
