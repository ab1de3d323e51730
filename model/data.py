"""Dialogue batches from a feature store (dict of arrays, as ``align`` or ``import`` write it)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from model.errors import ModelError


SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"dev": "valid", "validation": "valid"}   # MELD's name, and Hugging Face's
SPLIT_NAMES = f"{list(SPLITS)} (any case; dev and validation read as valid)"


def canonical_split(value) -> str | None:
    """``value`` as one of ``SPLITS`` (case and spaces aside, ``dev``/``validation`` as ``valid``),
    or None for a name the project does not know. Every manifest, store and evaluate reads splits here."""
    name = str(value).strip().lower()
    name = SPLIT_ALIASES.get(name, name)
    return name if name in SPLITS else None


def unknown_splits(values) -> list[str]:
    """The distinct split names in ``values`` that ``canonical_split`` does not know, sorted."""
    return sorted({str(v) for v in values if canonical_split(v) is None})


def holdout_valid(split: np.ndarray, dialogue_id: np.ndarray, seed: int = 0, share: float = 0.1):
    """Boolean masks (train, valid) over utterances. Without a valid split, a seeded part of the
    training dialogues is held out (whole dialogues); test is never used for selection."""
    split, dialogue_id = np.asarray(split), np.asarray(dialogue_id)
    train, valid = split == "train", split == "valid"
    dialogues = sorted(set(dialogue_id[train]))
    if not valid.any() and len(dialogues) >= 2:
        rng = np.random.default_rng(seed)
        held = rng.choice(dialogues, max(1, int(round(share * len(dialogues)))), replace=False)
        valid = train & np.isin(dialogue_id, held)
        train = train & ~valid
    return train, valid


def no_valid_rows_reason(split, dialogue_id, valid, labelled, usable=None, usable_what: str = "",
                         holdout_keys: str = "the seed or the valid share") -> str:
    """Why ``valid & labelled (& usable)`` is empty, and what fixes it, in words: the valid split
    whose rows are all unlabelled (or lack ``usable_what``), no valid split and too few training
    dialogues to hold one out, or held-out dialogues without a usable labelled row."""
    split, dialogue_id = np.asarray(split), np.asarray(dialogue_id)
    labelled = np.asarray(labelled, bool)
    usable = np.ones(len(split), bool) if usable is None else np.asarray(usable, bool)
    given = split == "valid"
    if given.any():
        rows, marked = int(given.sum()), int((given & labelled).sum())
        if not marked:
            return (f"the valid split has {rows} utterance(s) and none is labelled (an empty label, or one not in "
                    f"the class list): label some of them")
        return (f"the valid split's {marked} labelled utterance(s) all lack {usable_what or 'what this needs'}: "
                f"give some of them {usable_what or 'it'}")
    train = split == "train"
    n = len(set(dialogue_id[train]))
    if n < 2:
        return (f"there is no valid split, and {n} training dialogue(s) are too few to hold one out (that needs 2 or "
                f"more): give some dialogues the split valid, or add training dialogues")
    held = sorted({str(d) for d in dialogue_id[np.asarray(valid, bool)]})
    return (f"there is no valid split, and the {len(held)} training dialogue(s) held out as one ({held[:3]}) have no "
            f"labelled utterance{' with ' + usable_what if usable_what else ''}: give labelled dialogues the split "
            f"valid, or change {holdout_keys}")


def group_folds(dialogue_id: np.ndarray, rows: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) per row of ``rows``, whole dialogues per fold, seeded; -1 elsewhere."""
    dialogue_id = np.asarray(dialogue_id)
    names = sorted(set(dialogue_id[rows]))
    if len(names) < k:
        raise ModelError(f"{k} folds need at least {k} dialogues, there are {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: i % k for i, j in enumerate(order)}
    return np.array([fold_of[d] if r else -1 for d, r in zip(dialogue_id, rows)])


def dialogues(store: dict, rows_mask: np.ndarray) -> list[np.ndarray]:
    """Row indices of each dialogue among ``rows_mask``, in turn order (dialogues in first-seen order)."""
    groups = OrderedDict()
    for i in np.flatnonzero(rows_mask):
        groups.setdefault(store["dialogue_id"][i], []).append(i)
    return [np.array(sorted(rows, key=lambda i: store["turn"][i])) for rows in groups.values()]


def collate(store: dict, batch: list[np.ndarray], modalities, device) -> dict:
    """Pad a list of dialogues into tensors: feats/present per modality, mask, speakers, labels."""
    T = max(len(rows) for rows in batch)
    B = len(batch)
    out = {"feats": {}, "present": {}}
    index = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=bool)
    speakers = np.full((B, T), -1, dtype=np.int64)
    for b, rows in enumerate(batch):
        index[b, :len(rows)] = rows
        mask[b, :len(rows)] = True
        names = {}
        for t, i in enumerate(rows):
            speakers[b, t] = names.setdefault(str(store["speaker"][i]), len(names))
    for m in modalities:
        feats = store[m][index] * mask[..., None]
        present = store.get(f"{m}_present", np.ones(len(store[m]), bool))[index] & mask
        out["feats"][m] = torch.as_tensor(feats, dtype=torch.float32, device=device)
        out["present"][m] = torch.as_tensor(present, device=device)
    out["mask"] = torch.as_tensor(mask, device=device)
    out["speakers"] = torch.as_tensor(speakers, device=device)
    labels = np.where(mask, store["label"][index], -1)
    out["labels"] = torch.as_tensor(labels, dtype=torch.long, device=device)
    out["rows"] = index[mask]
    return out
