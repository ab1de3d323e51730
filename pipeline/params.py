"""Parameters: each stage reads its own section of ``params.yaml``, strictly.

A section becomes one or more dataclass configs; a key none of them knows is an error naming
the key and the section (a typo must not be silently ignored), and every tunable has a field.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml

from pipeline.errors import ParamsError

DEFAULT = Path("params.yaml")


def load_params(path=DEFAULT) -> dict:
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path}: expected sections (a mapping), got {type(loaded).__name__}")
    return loaded


def section(name: str, path=DEFAULT) -> dict:
    value = load_params(path).get(name) or {}
    if not isinstance(value, dict):
        raise ParamsError(f"{path}: section {name!r} must be a mapping of keys, got {value!r}")
    return dict(value)


def _build(cls, values: dict, name: str):
    known = {f.name: f for f in fields(cls)}
    own = {}
    for key, value in values.items():
        if isinstance(known[key].default, tuple) and isinstance(value, list):
            value = tuple(value)   # YAML has lists; frozen configs hold tuples
        own[key] = value
    try:
        return cls(**own)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"params section {name!r}: {exc}") from exc


def configs(name: str, values: dict, *classes):
    """Split a params section among ``classes`` (each key to the first that has it); unknown keys
    are an error naming them. Returns one instance per class."""
    taken, parts = set(), []
    for cls in classes:
        names = {f.name for f in fields(cls)} - taken
        parts.append({k: v for k, v in values.items() if k in names})
        taken |= names
    unknown = sorted(set(values) - taken)
    if unknown:
        raise ParamsError(f"params section {name!r}: unknown key(s) {unknown}; known: {sorted(taken)}")
    built = [_build(cls, part, name) for cls, part in zip(classes, parts)]
    return built[0] if len(built) == 1 else tuple(built)
