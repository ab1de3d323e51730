"""The shipped conversation model's head: each turn's frozen encoder states read in the context
of its whole dialogue.

Input per turn: the encoder's token states averaged over the turn's tokens at every layer
(L+1, D), from a frozen sentence encoder (``extractors.sentence.LayerMeans``). The head mixes
the layers with learned softmax weights (ELMo's scalar mix: the layers that carry emotion are
not the last, which was tuned for sentence similarity), normalises and projects the mix, adds
an embedding of who speaks (the order in which speakers first appear in the dialogue, so it
reads any recording's speakers, not one TV show's names), and runs a bidirectional GRU over
the dialogue: each turn is read with the turns before and after it. Its output beside the
turn's own projection gives the class logits.

Trained on whole dialogues (padding + masks), Adam(W), early stopping on the dev split's
weighted F1; the best epoch's weights are kept. Only this head is learned: the encoder stays as
its package ships it, so a run stores a few hundred kilobytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from model.layers import AdamW, Dropout


@dataclass(frozen=True)
class HeadConfig:
    layers: int              # encoder layers read, the embeddings' output included (L + 1)
    dim: int                 # the encoder's width
    classes: int
    hidden: int = 256
    dropout: float = 0.3
    speakers: int = 9        # speaker embeddings: the first 8 speakers of a dialogue, then one for all others


@dataclass(frozen=True)
class FitConfig:
    lr: float = 5e-4
    weight_decay: float = 1e-4
    epochs: int = 40
    patience: int = 6
    batch_size: int = 16     # dialogues per step


class DialogueHead(nn.Module):
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.mix = nn.Parameter(torch.zeros(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.proj = nn.Sequential(Dropout(config.dropout), nn.Linear(config.dim, config.hidden), nn.GELU())
        self.speaker = nn.Embedding(config.speakers, config.hidden)
        self.gru = nn.GRU(config.hidden, config.hidden // 2, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(Dropout(config.dropout), nn.Linear(2 * (config.hidden // 2) + config.hidden,
                                                                    config.classes))

    def forward(self, states: torch.Tensor, speakers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, L+1, D) states, (B, T) speaker numbers, (B, T) mask -> (B, T, classes) logits."""
        mixed = (states * torch.softmax(self.mix, 0)[:, None]).sum(-2)
        own = self.proj(self.norm(mixed))
        packed = nn.utils.rnn.pack_padded_sequence(own + self.speaker(speakers), mask.sum(1).cpu(),
                                                   batch_first=True, enforce_sorted=False)
        context, _ = self.gru(packed)
        context, _ = nn.utils.rnn.pad_packed_sequence(context, batch_first=True, total_length=own.shape[1])
        return self.out(torch.cat([own, context], -1))


def speaker_numbers(speakers, cap: int) -> np.ndarray:
    """Each turn's speaker as the order in which speakers first appear in the dialogue (0, 1, ...),
    the ``cap``-th and later all as ``cap - 1``."""
    first: dict = {}
    return np.array([first.setdefault(s, min(len(first), cap - 1)) for s in speakers], dtype=np.int64)


def batch(states: np.ndarray, dialogues: list[dict]):
    """Dialogues ({"rows", "speakers", "labels"?}) as padded tensors and a mask."""
    longest = max(len(d["rows"]) for d in dialogues)
    x = torch.zeros(len(dialogues), longest, *states.shape[1:])
    spk = torch.zeros(len(dialogues), longest, dtype=torch.long)
    y = torch.full((len(dialogues), longest), -100, dtype=torch.long)
    mask = torch.zeros(len(dialogues), longest, dtype=torch.bool)
    for b, d in enumerate(dialogues):
        n = len(d["rows"])
        x[b, :n] = torch.from_numpy(np.asarray(states[d["rows"]], np.float32))
        spk[b, :n] = torch.from_numpy(d["speakers"])
        if "labels" in d:
            y[b, :n] = torch.from_numpy(d["labels"])
        mask[b, :n] = True
    return x, spk, y, mask


@torch.no_grad()
def predict_dialogues(head: DialogueHead, states: np.ndarray, dialogues: list[dict], batch_size: int = 32):
    """{row: probabilities} for every turn of ``dialogues``."""
    head.eval()
    out = {}
    for i in range(0, len(dialogues), batch_size):
        part = dialogues[i:i + batch_size]
        x, spk, _, mask = batch(states, part)
        probs = torch.softmax(head(x, spk, mask), -1)
        for b, d in enumerate(part):
            for t, row in enumerate(d["rows"]):
                out[int(row)] = probs[b, t].numpy()
    return out


def weighted_f1(head, states, dialogues) -> float:
    probs = predict_dialogues(head, states, dialogues)
    truth = np.concatenate([d["labels"] for d in dialogues])
    rows = np.concatenate([d["rows"] for d in dialogues])
    return float(f1_score(truth, [int(probs[int(r)].argmax()) for r in rows], average="weighted", zero_division=0))


def fit_head(states: np.ndarray, train: list[dict], valid: list[dict], config: HeadConfig, fit: FitConfig,
             seed: int, progress=None) -> tuple[DialogueHead, list[dict]]:
    """The head trained on ``train`` dialogues, its weights from the epoch with the best weighted
    F1 on ``valid``; with the per-epoch history. ``progress(epoch, entry)`` is told each epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    head = DialogueHead(config)
    optimiser = AdamW(head.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
    best, best_state, waited, history = -1.0, None, 0, []
    for epoch in range(fit.epochs):
        head.train()
        total, count = 0.0, 0
        for idx in torch.randperm(len(train), generator=generator).split(fit.batch_size):
            x, spk, y, mask = batch(states, [train[j] for j in idx.tolist()])
            optimiser.zero_grad()
            loss = loss_fn(head(x, spk, mask).reshape(-1, config.classes), y.reshape(-1))
            loss.backward()
            optimiser.step()
            total, count = total + loss.item() * int(mask.sum()), count + int(mask.sum())
        score = weighted_f1(head, states, valid)
        history.append({"epoch": epoch, "loss": total / max(1, count), "valid_wf1": score})
        if progress:
            progress(epoch, history[-1])
        if score > best:
            best, best_state, waited = score, {k: v.detach().clone() for k, v in head.state_dict().items()}, 0
        else:
            waited += 1
            if waited >= fit.patience:
                break
    head.load_state_dict(best_state)
    return head.eval(), history


def head_blob(head: DialogueHead) -> dict:
    return {"config": asdict(head.config), "state": {k: v.detach().cpu() for k, v in head.state_dict().items()}}


def head_from_blob(blob: dict) -> DialogueHead:
    head = DialogueHead(HeadConfig(**blob["config"]))
    head.load_state_dict(blob["state"])
    return head.eval()
