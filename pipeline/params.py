"""Parameters: each stage reads its own section of ``params.yaml``."""
from __future__ import annotations

from pathlib import Path

import yaml

DEFAULT = Path("params.yaml")


def load_params(path=DEFAULT) -> dict:
    path = Path(path)
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def section(name: str, path=DEFAULT) -> dict:
    return dict(load_params(path).get(name) or {})
