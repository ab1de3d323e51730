"""Standardise and reduce a feature matrix to a fixed size, fitted on the training split only.

Fitted with scikit-learn; kept and applied as plain arrays (the same operations sklearn's
``transform`` runs), so a saved reducer is data, never a pickled object.
"""
from __future__ import annotations

from enum import Enum

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.preprocessing import StandardScaler

from extractors.base import ExtractorError


class Reduction(str, Enum):
    PCA = "pca"
    KBEST = "kbest"   # ANOVA F-test k-best (needs labels)
    NONE = "none"


def finite_rows(x: np.ndarray, where: str = "reached the reducer") -> np.ndarray:
    """``x``, or an error: zeros in place of NaN would be a feature marked present that was never
    measured (the cache makes a non-finite vector the reason ``non_finite``, so none should come)."""
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ExtractorError(f"{int(bad.sum())} of {len(x)} rows {where} with non-finite values "
                             f"(e.g. row {int(np.flatnonzero(bad)[0])})")
    return x


class Reducer:
    """Standardise, then PCA (whitened) or k-best to ``dim`` columns."""

    kind = "reducer"

    def __init__(self, method: str | Reduction = Reduction.PCA, dim: int = 100, seed: int = 0):
        self.method, self.dim, self.seed = Reduction(method), int(dim), seed
        self.arrays: dict[str, np.ndarray] = {}

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "Reducer":
        """Fewer training rows than ``dim`` is an error: PCA would keep fewer components and whiten
        held-out rows by near-zero variances. Fewer columns than ``dim`` keeps them all (``out_dim``)."""
        x = finite_rows(x)
        if self.method is Reduction.PCA and x.shape[0] <= min(self.dim, x.shape[1]):
            raise ExtractorError(f"pca to {self.dim} dimensions needs more than {self.dim} training clips with "
                                 f"features, but there are {x.shape[0]}: lower `dim` or add training clips")
        scaler = StandardScaler().fit(x)
        self.arrays = {"mean": scaler.mean_, "scale": scaler.scale_}
        x = scaler.transform(x)
        dim = min(self.dim, *x.shape)
        if self.method is Reduction.PCA:
            pca = PCA(n_components=dim, whiten=True, random_state=self.seed).fit(x)
            scale = np.sqrt(pca.explained_variance_)
            scale[scale < np.finfo(scale.dtype).eps] = np.finfo(scale.dtype).eps
            self.arrays.update(components=pca.components_, pca_mean=pca.mean_, whiten_scale=scale)
        elif self.method is Reduction.KBEST:
            if y is None:
                raise ExtractorError("k-best reduction needs the training labels")
            self.arrays["keep"] = SelectKBest(f_classif, k=dim).fit(x, y).get_support(indices=True)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        x = np.array(finite_rows(x), copy=True)
        x -= a["mean"]
        x /= a["scale"]
        if "components" in a:
            out = x @ a["components"].T
            out -= a["pca_mean"].reshape(1, -1) @ a["components"].T
            out /= a["whiten_scale"]
            x = out
        elif "keep" in a:
            x = x[:, a["keep"]]
        return finite_rows(x, "came out of the reducer").astype(np.float32)

    @property
    def out_dim(self) -> int:
        if "components" in self.arrays:
            return int(self.arrays["components"].shape[0])
        return int(len(self.arrays["keep"]) if "keep" in self.arrays else len(self.arrays["mean"]))

    def state(self) -> dict:
        return {"method": self.method.value, "dim": self.dim, "seed": self.seed,
                "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "Reducer":
        """The reducer a state describes; one whose method is unknown or whose arrays do not fit
        together (a tampered or foreign file) is a ValueError saying which, never a later crash."""
        reducer = cls(state["method"], state["dim"], state["seed"])   # an unknown method: ValueError
        reducer.arrays = {k: v.numpy() for k, v in state["arrays"].items()}
        reducer._check_shapes()
        return reducer

    def _check_shapes(self) -> None:
        a = self.arrays
        width = a.get("mean", np.zeros(0)).shape
        problems = [] if len(width) == 1 and width[0] > 0 and a["scale"].shape == width else ["mean and scale"]
        if self.method is Reduction.PCA:
            components = a.get("components", np.zeros((0, 0)))
            pca_mean, whiten = a.get("pca_mean", np.zeros(0)), a.get("whiten_scale", np.zeros(0))
            if components.ndim != 2 or components.shape[0] == 0 or components.shape[1:] != width or \
                    pca_mean.shape != width or whiten.shape != components.shape[:1]:
                problems.append("the PCA arrays")
        elif self.method is Reduction.KBEST:
            keep = a.get("keep", np.zeros(0))
            if keep.ndim != 1 or not len(keep) or keep.dtype.kind not in "iu" or keep.min() < 0 or \
                    (width and keep.max() >= width[0]):
                problems.append("the kept columns")
        if problems:
            raise ValueError(f"{' and '.join(problems)} do not fit together "
                             f"({ {k: tuple(v.shape) for k, v in a.items()} })")
