"""The ``cnn3d`` visual backbone's network: a small 3D-CNN over the face clips the visual
extractor caches (T x size x size), trained on the training labels; its ``out_dim`` layer is
the feature (the paper's video features were a 3D-CNN's). Needs torch only."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from extractors.fit import fit_classifier, pick_device, predict_batches
from model.layers import Dropout


class Small3DCNN(nn.Module):
    """Three 3D convolutions over (T, size, size) face clips; ``features`` is the ``out_dim`` layer."""

    def __init__(self, out_dim: int, classes: int, frames: int = 8, size: int = 32):
        super().__init__()
        self.shape = (1, frames, size, size)
        self.body = nn.Sequential(
            nn.Conv3d(1, 16, 3, padding=1), nn.BatchNorm3d(16), nn.ReLU(), nn.MaxPool3d((1, 2, 2)),
            nn.Conv3d(16, 32, 3, padding=1), nn.BatchNorm3d(32), nn.ReLU(), nn.MaxPool3d(2),
            nn.Conv3d(32, 64, 3, padding=1), nn.BatchNorm3d(64), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
            nn.Flatten(), Dropout(0.3), nn.Linear(64, out_dim), nn.ReLU())
        self.head = nn.Linear(out_dim, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.view(-1, *self.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Cnn3dPart:
    """A trained :class:`Small3DCNN` as a fitted part: face-clip vectors in, features out."""

    kind = "cnn3d"

    def __init__(self, net: Small3DCNN, dim: int, classes: list[str], frames: int, size: int):
        self.net, self.dim, self.classes, self.frames, self.size = net.eval(), dim, list(classes), frames, size

    @property
    def out_dim(self) -> int:
        return self.dim

    def transform(self, raw: np.ndarray) -> np.ndarray:
        device = next(self.net.parameters()).device
        return predict_batches(self.net.features, torch.from_numpy(np.asarray(raw, np.float32)), 256, device).numpy()

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "dim": self.dim, "classes": self.classes,
                "frames": self.frames, "size": self.size}

    @classmethod
    def from_state(cls, state: dict) -> "Cnn3dPart":
        net = Small3DCNN(state["dim"], len(state["classes"]), state["frames"], state["size"])
        net.load_state_dict(state["net"])
        return cls(net, state["dim"], state["classes"], state["frames"], state["size"])


def train_cnn3d(raw, y, fit_rows, valid_rows, classes, *, dim: int, frames: int, size: int, epochs: int,
                lr: float, batch_size: int, patience: int, seed: int, device: str = "auto"):
    """Fit on ``fit_rows`` with early stopping on ``valid_rows``; return the part and the history."""
    torch.manual_seed(seed)
    x = torch.from_numpy(np.asarray(raw, np.float32))
    net = Small3DCNN(dim, len(classes), frames, size)
    net, history = fit_classifier(net, x[fit_rows], y[fit_rows], x[valid_rows], y[valid_rows], epochs=epochs, lr=lr,
                                  batch_size=batch_size, patience=patience, seed=seed, device=pick_device(device),
                                  desc="3D-CNN")
    return Cnn3dPart(net, dim, classes, frames, size), history
