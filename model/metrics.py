"""Evaluation (paper 4.3): accuracy, weighted F1, per-class recall and F1, confusion matrices
normalised by recall and by precision, as JSON, CSV and PNG."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score


def classification_metrics(y_true, y_pred, classes) -> dict:
    labels = list(range(len(classes)))
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "acc": float(accuracy_score(y_true, y_pred) * 100),
        "wf1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0) * 100),
        "support": int(len(y_true)),
        "per_class": {c: {"acc": float(r * 100), "f1": float(f * 100), "support": int((np.asarray(y_true) == i).sum())}
                      for i, (c, r, f) in enumerate(zip(classes, recall, f1))},
    }


def confusion(y_true, y_pred, n_classes: int, normalise: str) -> np.ndarray:
    """``recall``: rows (true class) sum to 1; ``precision``: columns (predicted class) sum to 1."""
    counts = confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).astype(float)
    axis = 1 if normalise == "recall" else 0
    totals = counts.sum(axis=axis, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def plot_confusion(matrix: np.ndarray, classes, title: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.0 * len(classes) + 1.5))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                    color="white" if matrix[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
