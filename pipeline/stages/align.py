"""Align the modality feature files by utterance id into one store, with a coverage report."""
from __future__ import annotations

from pipeline.artifacts import check_writable, features_path
from pipeline.manifest import read_manifest
from pipeline.store import MODALITIES, align


def run(manifest_path, features_dir, out, report):
    manifest, classes = read_manifest(manifest_path)
    paths = {m: features_path(features_dir, m) for m in MODALITIES if features_path(features_dir, m).is_file()}
    check_writable(out, unrecorded=[report], inputs=[manifest_path, *paths.values()], stage="align")
    _, coverage = align(manifest, classes, paths, out, report)
    for modality, info in coverage["modalities"].items():
        print(f"align: {modality} {info['present']}/{coverage['utterances']} present, "
              f"missing {info['missing_by_reason']}")
    return coverage
