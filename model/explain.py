"""What the model attended to, per utterance: the multiview attention (for each fusion level and
view, the weight of each of the view's two modalities) and the memory attention (for each hop,
the weight of each utterance of the dialogue). DIMMN keeps both on its last forward pass
(``last_attention``, ``last_memory_attention``); this reads them out per dialogue."""
from __future__ import annotations

import numpy as np
import torch

from model.data import collate, dialogues


@torch.no_grad()
def explain(model, store: dict, rows_mask: np.ndarray, device, batch_size: int = 16) -> list[dict]:
    """One dict per dialogue: ``rows`` (store rows in turn order), ``probs`` (T, C), ``views``
    (T, H, 2 views, 2 modalities) or None, ``memory`` (R hops, T, T) or None, ``view_pairs``."""
    model.eval()
    out = []
    groups = dialogues(store, rows_mask)
    fusion = getattr(model, "fusion", None)
    pairs = getattr(fusion, "pairs", None)
    for i in range(0, len(groups), batch_size):
        chunk = groups[i:i + batch_size]
        batch = collate(store, chunk, model.modalities, device)
        probs = torch.softmax(model(batch["feats"], batch["present"], batch["mask"], batch["speakers"]).float(), -1)
        B, T = batch["mask"].shape
        views = torch.stack(fusion.last_attention, 1).view(B, T, len(fusion.last_attention), 2, 2) if pairs else None
        memory = torch.stack(model.last_memory_attention, 1) if model.last_memory_attention and \
            model.config.mode == "dimmn" else None
        for b, rows in enumerate(chunk):
            n = len(rows)
            out.append({"rows": rows, "probs": probs[b, :n].cpu().numpy(),
                        "views": views[b, :n].cpu().numpy() if views is not None else None,
                        "memory": memory[b, :, :n, :n].cpu().numpy() if memory is not None else None,
                        "view_pairs": pairs})
    return out
