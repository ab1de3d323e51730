"""Standardise and reduce a feature matrix to a fixed size, fitted on the training split only."""
from __future__ import annotations

from enum import Enum

import numpy as np
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.preprocessing import StandardScaler


class Reduction(str, Enum):
    PCA = "pca"
    KBEST = "kbest"   # ANOVA F-test k-best (needs labels)
    NONE = "none"


class Reducer:
    def __init__(self, method: str | Reduction = Reduction.PCA, dim: int = 100, seed: int = 0):
        self.method, self.dim, self.seed = Reduction(method), int(dim), seed
        self.scaler = StandardScaler()
        self.model = None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "Reducer":
        x = self.scaler.fit_transform(np.nan_to_num(x))
        dim = min(self.dim, x.shape[1])
        if self.method is Reduction.PCA:
            self.model = PCA(n_components=min(dim, x.shape[0]), whiten=True, random_state=self.seed).fit(x)
        elif self.method is Reduction.KBEST:
            if y is None:
                raise ValueError("k-best reduction needs the training labels")
            self.model = SelectKBest(f_classif, k=dim).fit(x, y)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = self.scaler.transform(np.nan_to_num(x))
        if self.model is not None:
            x = self.model.transform(x)
        return np.nan_to_num(x).astype(np.float32)
