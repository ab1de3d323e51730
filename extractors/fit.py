"""Training of the extractors' own networks (text CNN, 3D-CNN): Adam, minibatches, early
stopping on the validation split's weighted F1, best weights kept."""
from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from tqdm import tqdm

from model.layers import Adam


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def predict_batches(fn, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


def fit_classifier(model: nn.Module, x_train, y_train, x_valid, y_valid, *, epochs: int, lr: float,
                   batch_size: int, patience: int, seed: int, device="auto", weight_decay: float = 0.0,
                   desc: str = "fit") -> tuple[nn.Module, list[dict]]:
    """Train ``model`` (logits out) and return it with its best-on-valid weights and the history."""
    torch.manual_seed(seed)
    device = pick_device(device) if isinstance(device, str) else device
    model.to(device)
    optimiser = Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    y_train_t = torch.as_tensor(y_train, dtype=torch.long)
    best, best_state, waited, history = -1.0, None, 0, []
    bar = tqdm(range(epochs), desc=desc, unit="epoch", leave=False, disable=None)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(x_train[idx].to(device)), y_train_t[idx].to(device))
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        model.eval()
        pred = predict_batches(model, x_valid, 256, device).argmax(1).numpy()
        wf1 = f1_score(y_valid, pred, average="weighted", zero_division=0) if len(y_valid) else 0.0
        history.append({"epoch": epoch, "loss": total / max(1, len(order)), "valid_wf1": float(wf1)})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", valid_wf1=f"{wf1:.3f}")
        if wf1 > best:
            best, best_state, waited = wf1, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def class_indices(labels, classes) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[label] for label in labels], dtype=np.int64)
