"""Where two CPUs part: every ATen operator of the demo's text CNN training, hashed, so that a
trace made on one machine names the first operator that gives other bits on another.

    dvc repro ingest     # data/manifest.csv
    cd bench && python numerics_trace.py --manifest ../data/manifest.csv --against numerics_trace_intel.json
    cd bench && python numerics_trace.py --manifest ../data/manifest.csv --write my_cpu.json

The text stage's first fit (the CNN on every labelled training row, as ``python -m pipeline
text`` runs it, under the pinned numerics) runs inside a dispatch mode that hashes each
operator's outputs. Stopping the fit there is enough: its weights are ``data/models/text.pt``,
which parted an Intel Xeon from an AMD EPYC (docs/results.md, "The same numbers on another
machine"). ``numerics_trace_intel.json`` was made on an Intel Xeon. ``--against`` prints the
inputs that differ (word vectors, the initial embedding, the tokens), then the first operator
whose outputs differ, with the operators before it and the training losses computed before it. The last
line is one JSON object.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
import zlib
from pathlib import Path

from common import last_line  # first: it pins the CPU kernels before numpy and torch load

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

from numerics import cpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Bytes kept of each operator's md5. A difference hidden by a shared prefix (1 in 65,536) moves
# to the next operator that reads the value: the report is then one operator late.
DIGEST = 2
# Operators whose output is not a value: uninitialised memory, or the tensor given back.
UNVALUED = ("aten.empty", "aten.empty_like", "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided",
            "aten.detach", "aten.alias", "aten.lift_fresh", "aten.set_", "profiler.")
# Once per training batch (validation computes no loss): counted before an operator, the batch
# it is in (0: the first batch's forward pass; its backward pass counts 1). Adam's addcdiv_ runs
# once per parameter, not once per step.
LOSS = "aten.nll_loss_forward"


def digest(value) -> bytes:
    md5 = hashlib.md5()
    for leaf in tree_leaves(value):
        if isinstance(leaf, torch.Tensor):
            tensor = leaf.detach().cpu()
            md5.update((tensor.float() if tensor.dtype == torch.bfloat16 else tensor).contiguous().numpy().tobytes())
        elif isinstance(leaf, (bool, int, float)):
            md5.update(repr(leaf).encode())
    return md5.digest()[:DIGEST]


class Trace(TorchDispatchMode):
    """Every operator's name and the digest of its outputs, in order."""

    def __init__(self):
        super().__init__()
        self.names, self.digests = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        if not name.startswith(UNVALUED):
            self.names.append(name)
            self.digests.append(digest(out))
        return out


class FitTraced(Exception):
    """Raised once the first fit is traced: the rest of the stage is not needed."""


def trace_first_fit(manifest_path: Path) -> dict:
    import extractors.text as text
    from pipeline.params import section
    from pipeline.stages import text as stage
    from pipeline.manifest import read_manifest

    record = {}
    original = text.fit_classifier

    def traced(model, x_train, y_train, x_valid, y_valid, **kwargs):
        record["inputs"] = {"embedding": digest(model.embedding.weight).hex(), "x_train": digest(x_train).hex(),
                            "y_train": digest(torch.as_tensor(y_train)).hex(), "x_valid": digest(x_valid).hex()}
        with Trace() as trace:
            original(model, x_train, y_train, x_valid, y_valid, **kwargs)
        record["names"], record["digests"] = trace.names, trace.digests
        raise FitTraced

    text.fit_classifier = traced
    params = section("text", ROOT / "params.yaml")
    manifest, classes = read_manifest(manifest_path)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            stage.build(manifest, classes, params, Path(tmp) / "text.npz", Path(tmp) / "text.pt")
        except FitTraced:
            pass
        finally:
            text.fit_classifier = original
    if "names" not in record:
        raise SystemExit("the text stage ran no fit to trace (text.backbone must be kim_cnn)")
    return record


def packed(record: dict) -> dict:
    """The record as JSON: the operator names once each, every operator as an index into them."""
    names = sorted(set(record["names"]))
    index = {n: i for i, n in enumerate(names)}
    name, flags = cpu()
    return {"cpu": name, "flags": flags, "torch": torch.__version__, "numpy": np.__version__,
            "inputs": record["inputs"], "operators": names,
            "order": base64.b64encode(zlib.compress(np.array([index[n] for n in record["names"]], "<u2").tobytes(), 9)).decode(),
            "digests": base64.b64encode(b"".join(record["digests"])).decode()}


def unpacked(blob: dict) -> tuple[list[str], list[bytes]]:
    raw = base64.b64decode(blob["digests"])
    order = np.frombuffer(zlib.decompress(base64.b64decode(blob["order"])), "<u2")
    return ([blob["operators"][i] for i in order],
            [raw[i:i + DIGEST] for i in range(0, len(raw), DIGEST)])


# model.layers.Adam's root, taken in float64 and rounded (2026-12-07): one float32 aten.sqrt in a
# trace made before it, so that the two compare
ROOT_IN_FLOAT64 = ["aten._to_copy", "aten.sqrt", "aten._to_copy"]


def as_float32_roots(names: list[str], digests: list[bytes]) -> tuple[list[str], list[bytes]]:
    out_names, out_digests, i = [], [], 0
    while i < len(names):
        if names[i:i + 3] == ROOT_IN_FLOAT64:
            out_names.append("aten.sqrt")
            out_digests.append(digests[i + 2])
            i += 3
        else:
            out_names.append(names[i])
            out_digests.append(digests[i])
            i += 1
    return out_names, out_digests


def first_difference(mine: dict, theirs: dict) -> dict:
    names, digests = as_float32_roots(*unpacked(mine))
    their_names, their_digests = as_float32_roots(*unpacked(theirs))
    out = {"reference_cpu": theirs["cpu"], "inputs_differ": sorted(k for k in mine["inputs"]
                                                                   if mine["inputs"][k] != theirs["inputs"].get(k)),
           "operators": len(names), "reference_operators": len(their_names)}
    for i, (a, b) in enumerate(zip(zip(names, digests), zip(their_names, their_digests))):
        if a != b:
            out.update(first=i, losses_before=names[:i].count(LOSS), operator=a[0], reference_operator=b[0],
                       before=names[max(0, i - 8):i])
            return out
    out["first"] = None if len(names) == len(their_names) else min(len(names), len(their_names))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "data" / "manifest.csv")
    parser.add_argument("--write", type=Path, help="save this machine's trace here")
    parser.add_argument("--against", type=Path, help="a trace made elsewhere: name the first operator that differs")
    args = parser.parse_args()
    record = trace_first_fit(args.manifest.resolve())
    mine = packed(record)
    result = {"cpu": mine["cpu"], "operators": len(record["names"])}
    if args.write:
        args.write.write_text(json.dumps(mine, separators=(",", ":")) + "\n")
    if args.against:
        result["against"] = first_difference(mine, json.loads(args.against.read_text()))
        print(json.dumps(result["against"], indent=1), file=sys.stderr)
    last_line(result)


if __name__ == "__main__":
    main()
