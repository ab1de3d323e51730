"""The built-in demo corpus: two-speaker dialogues of real H.264/AAC clips (``data/demo``)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

from pipeline.params import configs, section


@dataclass(frozen=True)
class DemoStage:
    workers: int = 1   # processes; the corpus is byte-identical for any count


def run(out, params_path, dialogues=None, seed=None, workers=None):
    from pipeline.demo.corpus import DemoConfig, generate

    config, stage = configs("demo", section("demo", params_path), DemoConfig, DemoStage)
    config = replace(config, **{k: v for k, v in (("dialogues", dialogues), ("seed", seed)) if v is not None})
    start = time.time()
    manifest = generate(out, config, workers=workers if workers is not None else stage.workers)
    print(f"demo: {len(manifest)} clips in {manifest['dialogue_id'].nunique()} dialogues "
          f"-> {out} ({time.time() - start:.1f}s)")
    return manifest
