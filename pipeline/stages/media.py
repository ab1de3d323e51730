"""Audio and visual features: per-clip extraction through the cache, then a fitted part (a
reducer, or the 3D-CNN) fitted on the training split turns the raw vectors into features."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from extractors.registry import media_extractor
from pipeline.artifacts import check_writable
from pipeline.parts import save_part
from pipeline.cache import extract_utterances
from pipeline.errors import ParamsError, PipelineError
from pipeline.lineage import write_record
from pipeline.manifest import read_manifest, training_parts
from pipeline.crossfit import CrossFitting, content_key, cross_fit
from pipeline.params import check_overrides, configs, params_file, section
from pipeline.store import label_indices, save_features


@dataclass(frozen=True)
class MediaStage:
    """How a media stage runs and reduces; ``workers`` and ``scheduler`` change no feature."""
    workers: int = 1
    scheduler: str | None = None   # a Dask scheduler (tcp://HOST:PORT) runs the clips; None: local workers
    dim: int = 100
    reduction: str = "pca"      # pca | kbest | none
    seed: int = 0

    CHOICES = {"reduction": ("pca", "kbest", "none")}


@dataclass(frozen=True)
class Cnn3dTraining:
    """The visual ``cnn3d`` backbone's network training (unused by other backbones)."""
    cnn3d_epochs: int = 30
    cnn3d_lr: float = 1e-3
    cnn3d_patience: int = 5
    cnn3d_batch_size: int = 32
    cnn3d_device: str = "auto"


STAGE_CONFIGS = {"audio": (MediaStage, CrossFitting), "visual": (MediaStage, CrossFitting, Cnn3dTraining)}


def stage_configs(modality: str, params: dict):
    """(extractor config, MediaStage, CrossFitting, Cnn3dTraining or None) from the params section."""
    config_cls, _ = media_extractor(modality)
    built = configs(modality, params, config_cls, *STAGE_CONFIGS[modality])
    return built[0], built[1], built[2], (built[3] if len(built) > 3 else None)


def extraction_groups(config, frame: pd.DataFrame) -> list:
    """(config, rows) for each group of rows extracted alike. A config whose settings differ by
    utterance (``per_utterance``: a ``visual.region`` map) gives one group per resolved config, so
    its cache entries are those of a run with that config for all (changing one session's side
    re-extracts that session only)."""
    if not hasattr(config, "per_utterance"):
        return [(config, frame)]
    try:
        resolved = config.per_utterance(frame["utterance_id"].tolist())
    except ValueError as exc:
        raise ParamsError(str(exc)) from exc
    groups = {}
    for position, one in enumerate(resolved):
        groups.setdefault(one, []).append(position)
    return [(one, frame.iloc[rows]) for one, rows in groups.items()]


def cache_params(extractor_cls, config) -> dict:
    """What keys a clip's cache entry: the config, and the extractor's ``version`` where its
    output changed for the same config (entries made before that are then not reused)."""
    version = getattr(extractor_cls, "version", None)
    fields = config.cache_fields() if hasattr(config, "cache_fields") else asdict(config)
    return fields if version is None else dict(fields, extractor_version=version)


def extractor_factory(extractor_cls, config, cache_root):
    """What builds the extractor in each worker; one that loads pretrained weights gets the cache's
    ``weights`` folder, where the transcription stage joins Whisper's too (one copy for both)."""
    if getattr(extractor_cls, "needs_weights", False):
        return partial(extractor_cls, config, weights_root=Path(cache_root) / "weights")
    return partial(extractor_cls, config)


def extract_raw(modality: str, frame: pd.DataFrame, config, cache_root, workers: int, progress: bool = True,
                scheduler=None):
    """Raw vectors of the rows that gave one, a presence mask, missing reasons, per-clip info, counts."""
    _, extractor_cls = media_extractor(modality)
    results, counts = {}, Counter(speakers_tied=0, retied=0)   # reported even when nothing was tied
    extract = lambda one, rows: extract_utterances(  # noqa: E731
        rows, extractor_factory(extractor_cls, one, cache_root), modality, cache_params(extractor_cls, one),
        Path(cache_root) / modality, workers=workers, progress=progress, scheduler=scheduler)
    for part_config, rows in extraction_groups(config, frame):
        found, part_counts = extract(part_config, rows)
        counts.update(part_counts)
        for tied_config, tied_rows in tied_groups(part_config, rows, found, counts):
            retied, _ = extract(tied_config, tied_rows)   # replaces those rows' first results
            found.update(retied)
            counts["retied"] += len(retied)
        results.update(found)
    ids = frame["utterance_id"].tolist()
    present = np.array([results[u].vector is not None for u in ids], dtype=bool)
    reasons = np.array(["" if results[u].vector is not None else results[u].error or "unknown" for u in ids])
    raw = np.stack([results[u].vector for u in ids if results[u].vector is not None]) if present.any() else None
    return raw, present, reasons, [results[u].info for u in ids], dict(counts)


def tied_groups(config, rows: pd.DataFrame, found: dict, counts: Counter) -> list:
    """(config with the speaker's ``face_x``, rows) for the utterances that a config with
    ``tied_faces`` (``visual.speaker: active``, ``tie_speakers``) re-extracts on their speaker's face."""
    if not hasattr(config, "tied_faces") or "speaker" not in rows:
        return []
    # a frame without dialogues (extract_raw called as a function): a speaker is one per media file
    recordings = rows["dialogue_id"] if "dialogue_id" in rows else rows["media"]
    keys = list(zip(recordings.astype(str), rows["speaker"].astype(str)))
    tied, speakers = config.tied_faces(keys, [found[u].info for u in rows["utterance_id"]])
    counts["speakers_tied"] += speakers
    groups = {}
    for position, face_x in tied.items():
        groups.setdefault(face_x, []).append(position)
    return [(replace(config, face_x=x), rows.iloc[positions]) for x, positions in groups.items()]


def fit_part(modality, raw, y, fit_rows, valid_rows, classes, config, stage: MediaStage, cnn3d: Cnn3dTraining):
    """The reducer (or, for the ``cnn3d`` backbone, the trained network) and its record extras."""
    if getattr(config, "backbone", None) == "cnn3d":
        from extractors.cnn3d import train_cnn3d

        part, history = train_cnn3d(raw, y, fit_rows, valid_rows, classes, dim=stage.dim, frames=config.clip_frames,
                                    size=config.clip_size, epochs=cnn3d.cnn3d_epochs, lr=cnn3d.cnn3d_lr,
                                    batch_size=cnn3d.cnn3d_batch_size, patience=cnn3d.cnn3d_patience,
                                    seed=stage.seed, device=cnn3d.cnn3d_device)
        return part, {"history": history}
    from extractors.reduce import Reducer

    return Reducer(stage.reduction, stage.dim, stage.seed).fit(raw[fit_rows], y[fit_rows]), {}


def fitted_on_labels(config, stage: MediaStage) -> bool:
    """Parts that learn from labels are cross-fitted; PCA (unsupervised) is not."""
    return getattr(config, "backbone", None) == "cnn3d" or stage.reduction == "kbest"


def run(modality: str, manifest_path, out, model_path, cache_root, params_path, workers=None, scheduler=None):
    params = section(modality, params_path)
    stage_configs(modality, params)   # a typo fails here, before any work
    check_overrides(modality, workers=workers, scheduler=scheduler)   # --workers, --scheduler: as the params are
    manifest, classes = read_manifest(manifest_path)
    return build(modality, manifest, classes, params, out, model_path, cache_root, workers, inputs=[manifest_path],
                 scheduler=scheduler, params_path=params_path)


def build(modality: str, manifest: pd.DataFrame, classes: list[str], params: dict, out, model_path, cache_root,
          workers=None, progress=True, inputs=(), scheduler=None, params_path=None):
    """Extract every clip (cached), fit the part on the labelled training clips, write features and part.
    ``inputs`` are hashed into the lineage; the params file is not (the record holds the stage's section)."""
    config, stage, crossfit, cnn3d = stage_configs(modality, params)
    check_writable(out, model_path, folders=[Path(cache_root) / modality], inputs=[*inputs, params_file(params_path)],
                   stage=modality)
    raw, present, reasons, infos, counts = extract_raw(modality, manifest, config, cache_root,
                                                       workers if workers is not None else stage.workers, progress,
                                                       scheduler or stage.scheduler)
    if raw is None:
        raise PipelineError(f"{out}: no clip gave {modality} features ({dict(Counter(map(str, reasons)))})")
    rows = np.flatnonzero(present)
    train, valid = training_parts(manifest, stage.seed)
    y = label_indices(manifest["label"], classes)[rows]
    fit_rows, valid_rows = train[rows] & (y >= 0), valid[rows] & (y >= 0)
    if not fit_rows.any():
        raise PipelineError(f"{out}: no labelled training clip gave {modality} features "
                            f"({dict(Counter(map(str, reasons[train])))})")
    fit = lambda mask: fit_part(modality, raw, y, mask, valid_rows, classes, config, stage, cnn3d)  # noqa: E731
    part, part_extra = fit(fit_rows)
    save_part(part, model_path)
    write_record(model_path, modality, params, inputs, extra={"extractor": asdict(config), "classes": classes, **part_extra})
    folds = crossfit.folds if fitted_on_labels(config, stage) else 0
    reduced = cross_fit(lambda mask: fit(mask)[0], lambda p, mask: p.transform(raw[mask]), part.transform(raw),
                        manifest["dialogue_id"].to_numpy()[rows], train[rows], fit_rows, valid[rows], folds, stage.seed,
                        Path(cache_root) / f"{modality}_folds", content_key(params, classes, raw, y))
    matrix = np.zeros((len(present), part.out_dim), np.float32)
    matrix[present] = reduced.features
    # The record holds what the features are, not how this machine's cache served them (computed /
    # cached counts differ between clones and would make dvc.lock differ): those go to the console.
    extra = {"raw_dim": int(raw.shape[1]), "dim": int(matrix.shape[1]),
             "missing": dict(Counter(str(r) for r in reasons if r)), "crossfit": reduced.info}
    if modality == "visual":
        extra["frames"] = int(sum(i.get("frames", 0) for i in infos))
        extra["face_frames"] = int(sum(i.get("face_frames", 0) for i in infos))
        extra["clips_without_face"] = int(sum(1 for i in infos if i.get("frames") and not i.get("face_frames")))
        if config.speaker == "active":
            extra["speaker_faces"] = dict(Counter(str(i.get("speaker")) for i in infos if i.get("frames")))
    save_features(out, manifest["utterance_id"], matrix, present, reasons, modality, params, inputs, extra=extra)
    print(f"{modality}: {int(present.sum())}/{len(present)} clips, {matrix.shape[1]}-d "
          f"({counts['computed']} computed, {counts['cached']} from cache, {counts['repaired']} repaired; "
          f"missing {extra['missing']})")
    if modality == "visual":
        print(f"{modality}: faces in {extra['face_frames']}/{extra['frames']} frames; "
              f"{extra['clips_without_face']} clips without a face")
        if "speaker_faces" in extra:
            print(f"{modality}: speaking faces by how they were found {extra['speaker_faces']}; "
                  f"{counts['speakers_tied']} speaker(s) tied to their face, {counts['retied']} utterances "
                  f"extracted again on it")
    return matrix, present, extra
