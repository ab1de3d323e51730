"""Dataclass configs built from a params section, refusing keys they do not know."""
from dataclasses import fields


def from_section(cls, params: dict, section: str):
    known = {f.name for f in fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown {section} parameters: {sorted(unknown)}; known: {sorted(known)}")
    return cls(**params)
