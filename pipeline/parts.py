"""Fitted parts (text CNN, reducer, 3D-CNN) saved and loaded the same way by a stage and by ``predict``.

A part is a torch file holding its ``kind`` and its ``state`` (tensors and plain values),
read with ``weights_only=True``: loading a run folder someone shared never executes code.
"""
from __future__ import annotations

from pathlib import Path

import torch

from extractors.registry import fitted_part_class
from pipeline.artifacts import atomic_write
from pipeline.errors import PipelineError, shown


def save_part(part, path) -> Path:
    """A fitted part (``extractors.base.FittedPart``) as data: its kind and its state."""
    return atomic_write(path, lambda handle: torch.save({"kind": part.kind, "state": part.state()}, handle))


def load_part(path):
    """Rebuild a fitted part; anything but our data-only layout is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: fitted part not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code, a torn or foreign file: all refused alike
        first = (str(exc).splitlines() or [type(exc).__name__])[0]   # an empty file's error has no text
        raise PipelineError(f"{path}: not a fitted part this pipeline wrote (refused: {first[:200]})") from exc
    if not isinstance(blob, dict) or "kind" not in blob or "state" not in blob:
        raise PipelineError(f"{path}: not a fitted part this pipeline wrote (no kind/state)")
    if bad := non_finite(blob["state"]):   # tampered or damaged: it would shift every prediction silently
        raise PipelineError(f"{path}: fitted part of kind {blob['kind']!r} holds non-finite values in "
                            f"{', '.join(bad)} (damaged; fit it again)")
    try:
        return fitted_part_class(blob["kind"]).from_state(blob["state"])
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:   # unknown kind, bad state
        raise PipelineError(f"{path}: fitted part of kind {shown(blob['kind'])} cannot be rebuilt "
                            f"({str(exc)[:300]})") from exc


def non_finite(state, name: str = "state") -> list[str]:
    """Where a part's tensors hold NaN or infinity (nested names): a fitted part never does."""
    if isinstance(state, torch.Tensor):
        return [name] if state.is_floating_point() and not torch.isfinite(state).all() else []
    if isinstance(state, dict):
        return [bad for key, value in state.items() for bad in non_finite(value, f"{name}.{key}")]
    if isinstance(state, (list, tuple)):
        return [bad for i, value in enumerate(state) for bad in non_finite(value, f"{name}[{i}]")]
    return []
