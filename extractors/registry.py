"""Extractors and fitted parts by name: one table per job, imported only when used.

``MEDIA_EXTRACTORS`` maps a modality to its (config, extractor) classes; each modality's own
variants are a registry inside its module (``audio.AudioFeatureSet``, ``visual.BACKBONES``).
``FITTED_PARTS`` maps a fitted part's ``kind`` to the class that rebuilds it from its state.
Entries are "module:Class" strings, so importing this table loads no media library.
"""
from __future__ import annotations

from importlib import import_module

MEDIA_EXTRACTORS = {
    "audio": ("extractors.audio:AudioConfig", "extractors.audio:AudioExtractor"),
    "visual": ("extractors.visual:VisualConfig", "extractors.visual:VisualExtractor"),
}

FITTED_PARTS = {
    "kim_cnn": "extractors.text:TextFeaturizer",
    "sentence_encoder": "extractors.sentence:SentenceEncoder",
    "reducer": "extractors.reduce:Reducer",
    "cnn3d": "extractors.cnn3d:Cnn3dPart",
}


def resolve(target: str):
    module, name = target.split(":")
    return getattr(import_module(module), name)


def media_extractor(modality: str):
    """(config class, extractor class) of a media modality."""
    if modality not in MEDIA_EXTRACTORS:
        raise KeyError(f"no media extractor for {modality!r}; known: {sorted(MEDIA_EXTRACTORS)}")
    return tuple(resolve(t) for t in MEDIA_EXTRACTORS[modality])


def fitted_part_class(kind: str):
    if kind not in FITTED_PARTS:
        raise KeyError(f"unknown fitted part {kind!r}; known: {sorted(FITTED_PARTS)}")
    return resolve(FITTED_PARTS[kind])
