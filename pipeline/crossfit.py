"""Cross-fitting: training rows get features from models that never saw their labels.

A part fitted on labels (the text CNN, a fine-tuned encoder, the 3D-CNN, k-best) makes cleaner
features for its own training rows than for any other row, and a context model trained on them
learns on features it will never see at test time. So the training dialogues are split into K
folds; fold k's rows get the features of a part fitted on the other K-1 folds, and every other
row (valid, test, a new conversation) the features of the part fitted on all training rows.

A fold part's feature basis is its own (a hidden layer, a column choice), so its features are
mapped into the full part's space by a ridge regression fitted on the valid rows, which neither
part trained on: no label enters the map. The fold parts are cached, so an interrupted stage
resumes without refitting the folds it finished.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

from model.data import group_folds
from pipeline.errors import PipelineError
from pipeline.parts import load_part, save_part


@dataclass(frozen=True)
class CrossFitting:
    """A stage's cross-fitting setting: K folds by dialogue (0: off, training rows keep
    the full part's features, as the original ERC pipelines did)."""
    folds: int = 5


@dataclass
class CrossFit:
    """The result: features for every row, which fold made each (-1: the full part), and how
    well each fold's map into the full space fits on valid rows (R^2)."""
    features: np.ndarray
    source: np.ndarray
    info: dict = field(default_factory=dict)
    parts: list = field(default_factory=list)     # fold k's part at index k


def cross_fit(fit, features, full: np.ndarray, dialogue_ids, oof_rows: np.ndarray, fit_rows: np.ndarray,
              valid_rows: np.ndarray, k: int, seed: int, cache_dir=None, cache_key: str = "") -> CrossFit:
    """``fit(mask)`` fits a part on the rows of ``mask`` (within ``fit_rows``); ``features(part, rows)``
    gives its features for a boolean row mask; ``full`` holds the full part's features of every row.
    ``oof_rows`` (the training rows) get out-of-fold features mapped into the full space."""
    out, source = full.copy(), np.full(len(full), -1)
    if k < 2:
        return CrossFit(out, source, {"folds": 0})
    check_cross_fitting(k, dialogue_ids, oof_rows, valid_rows)
    folds = group_folds(dialogue_ids, oof_rows, k, seed)
    r2, parts = [], []
    for fold in range(k):
        held = folds == fold
        part = _cached_fold(fit, fit_rows & ~held, fold, cache_dir, cache_key)
        align = Ridge(alpha=1.0).fit(features(part, valid_rows), full[valid_rows])
        r2.append(float(align.score(features(part, valid_rows), full[valid_rows])))
        out[held] = align.predict(features(part, held)).astype(np.float32)
        source[held] = fold
        parts.append(part)
    return CrossFit(out, source, {"folds": k, "seed": seed, "map": "ridge(alpha=1) on valid rows",
                                  "map_r2_on_valid": [round(v, 4) for v in r2]}, parts)


def check_cross_fitting(k: int, dialogue_ids, oof_rows: np.ndarray, valid_rows: np.ndarray, setting: str = "folds",
                        source=None) -> None:
    """What ``k`` folds need, checked before any part is fitted: a training dialogue per fold
    (each fold's part fits on the others: two at the least) and valid rows to map with.
    ``setting`` names the params key the user can change (``text.folds``)."""
    if k < 2:
        return
    where = f"{source}: " if source else ""
    n = len(set(np.asarray(dialogue_ids)[oof_rows]))
    if n < k:
        fix = (f"lower {setting} to {n} or less, or set {setting}: 0 to turn cross-fitting off" if n >= 2 else
               f"it needs two at the least: add dialogues, or set {setting}: 0 to turn cross-fitting off")
        raise PipelineError(f"{where}cross-fitting with {setting}: {k} needs at least {k} training dialogues (one "
                            f"per fold, each fold's part fitted on the others), there {'is' if n == 1 else 'are'} "
                            f"{n}: {fix}")
    if not valid_rows.any():
        raise PipelineError(f"{where}cross-fitting maps fold features with the valid rows, and there are none: give "
                            f"the data a valid split (ingest.holdout_share) or set {setting}: 0")


def _cached_fold(fit, mask: np.ndarray, fold: int, cache_dir, cache_key: str):
    if cache_dir is None:
        return fit(mask)
    key = hashlib.sha256(json.dumps([cache_key, fold, np.flatnonzero(mask).tolist()]).encode()).hexdigest()
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        return load_part(path)
    part = fit(mask)
    save_part(part, path)
    return part


# Changes to the fitting code that move its numbers: a fold part fitted before one is not reused
# (convolutions as matrix products; Adam's square root in float64, 2026-12-07)
FITTING_CODE = ("conv: gemm", "adam: float64 root")


def content_key(*parts) -> str:
    """A cache key from the settings and data a fold part depends on (arrays hashed by bytes), and
    the fitting code's revision (``FITTING_CODE``)."""
    digest = hashlib.sha256()
    for p in (*parts, FITTING_CODE):
        if isinstance(p, np.ndarray):
            digest.update(np.ascontiguousarray(p).tobytes())
        else:
            digest.update(json.dumps(p, sort_keys=True, default=str).encode())
    return digest.hexdigest()
