"""Training and prediction for DIMMN and its baselines.

Adam with weight decay, dropout, optional class weights, minibatches of whole dialogues,
early stopping on the validation split's weighted F1, best and last checkpoints (resume from
the last), per-epoch history, fixed seeds. Under ``torchrun`` (WORLD_SIZE > 1) each process
trains on its share of the dialogues inside DistributedDataParallel (NCCL on CUDA, gloo on
CPU); rank 0 writes the outputs.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model.config import from_section
from model.data import collate, dialogues, holdout_valid
from model.dimmn import DIMMN, ModelConfig
from model.metrics import classification_metrics


@dataclass
class TrainConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-5
    epochs: int = 60
    patience: int = 10
    batch_size: int = 8            # dialogues per step
    class_weights: bool = False
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"           # auto: CUDA when there is one
    amp: bool = False              # bf16 autocast on CUDA
    valid_share: float = 0.1       # held out of train when the data has no valid split
    resume: bool = False

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        return from_section(cls, params, "train")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def feature_dims(store: dict, modalities) -> dict:
    return {m: int(store[m].shape[1]) for m in modalities if m in store}


def build_model(store: dict, config: ModelConfig) -> DIMMN:
    return DIMMN(config, feature_dims(store, config.modalities), len(store["classes"]))


def _distributed():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


@torch.no_grad()
def predict(model: DIMMN, store: dict, rows_mask: np.ndarray, device, batch_size: int = 16, amp: bool = False):
    """Row indices, class probabilities (N, C) for the utterances in ``rows_mask``."""
    model.eval()
    rows, probs = [], []
    groups = dialogues(store, rows_mask)
    for i in range(0, len(groups), batch_size):
        batch = collate(store, groups[i:i + batch_size], model.modalities, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(batch["feats"], batch["present"], batch["mask"], batch["speakers"])
        probs.append(torch.softmax(logits.float()[batch["mask"]], -1).cpu().numpy())
        rows.append(batch["rows"])
    if not rows:
        return np.zeros(0, int), np.zeros((0, len(store["classes"])))
    return np.concatenate(rows), np.concatenate(probs)


def _evaluate(model, store, mask, device, cfg):
    rows, probs = predict(model, store, mask, device, amp=cfg.amp)
    labelled = store["label"][rows] >= 0
    if not labelled.any():
        return {"acc": 0.0, "wf1": 0.0}
    return classification_metrics(store["label"][rows][labelled], probs[labelled].argmax(1), list(store["classes"]))


def train(store: dict, model_config: ModelConfig, cfg: TrainConfig, checkpoint=None, progress: bool = True):
    """Train on the store's train split; return (best model, history, summary)."""
    rank, world = _distributed()
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    train_mask, valid_mask = holdout_valid(store["split"], store["dialogue_id"], cfg.seed, cfg.valid_share)
    train_mask &= store["label"] >= 0
    model = build_model(store, model_config)
    model.set_input_stats({m: store[m][train_mask & store.get(f"{m}_present", train_mask)] for m in model.modalities})
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_classes = len(store["classes"])
    weight = None
    if cfg.class_weights:
        counts = np.bincount(store["label"][train_mask], minlength=n_classes).astype(float)
        weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / n_classes, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight, ignore_index=-1)
    history, best, best_state, waited, start_epoch = [], -1.0, None, 0, 0
    last_path = Path(str(checkpoint) + ".last") if checkpoint else None
    if cfg.resume and last_path and last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history, best, waited, start_epoch = state["history"], state["best"], state["waited"], state["epoch"] + 1
        best_state = state["best_state"]
        torch.set_rng_state(state["rng"])
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    train_dialogues = dialogues(store, train_mask)
    generator = torch.Generator().manual_seed(cfg.seed)
    for _ in range(start_epoch):   # replay the shuffles of finished epochs so a resumed run matches
        torch.randperm(len(train_dialogues), generator=generator)
    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"train {model_config.mode}", unit="epoch",
               disable=None if progress and rank == 0 else True)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_dialogues), generator=generator).tolist()
        mine = order[rank::world]
        total, seen = 0.0, 0
        for i in range(0, len(mine), cfg.batch_size):
            batch = collate(store, [train_dialogues[j] for j in mine[i:i + cfg.batch_size]], model.modalities, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
                logits = net(batch["feats"], batch["present"], batch["mask"], batch["speakers"])
                loss = loss_fn(logits.float().reshape(-1, n_classes), batch["labels"].reshape(-1))
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimiser.step()
            count = int(batch["mask"].sum())
            total, seen = total + loss.item() * count, seen + count
        train_metrics = _evaluate(model, store, train_mask, device, cfg)
        valid_metrics = _evaluate(model, store, valid_mask, device, cfg)
        history.append({"epoch": epoch, "loss": total / max(seen, 1), "train_acc": train_metrics["acc"],
                        "valid_acc": valid_metrics["acc"], "valid_wf1": valid_metrics["wf1"]})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", valid_wf1=f"{valid_metrics['wf1']:.1f}")
        if valid_metrics["wf1"] > best:
            best, best_state, waited = valid_metrics["wf1"], copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
        if last_path and rank == 0:
            torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "history": history,
                        "best": best, "best_state": best_state, "waited": waited, "epoch": epoch,
                        "rng": torch.get_rng_state()}, last_path)
        if waited >= cfg.patience:
            break
    model.load_state_dict(best_state)
    summary = {"best_valid_wf1": best, "epochs_run": len(history), "device": str(device), "world_size": world,
               "train_utterances": int(train_mask.sum()), "valid_utterances": int(valid_mask.sum())}
    if world > 1:
        summary["ddp_params_identical"] = _params_identical(model)
    if checkpoint and rank == 0:
        save_checkpoint(model, store, model_config, cfg, checkpoint, summary)
    return model, history, summary


def _params_identical(model) -> bool:
    flat = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered)


def save_checkpoint(model, store, model_config, train_config, path, summary) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "model_config": asdict(model_config),
                "train_config": asdict(train_config), "dims": feature_dims(store, model_config.modalities),
                "classes": [str(c) for c in store["classes"]], "summary": summary}, path)


def load_checkpoint(path, device="cpu") -> tuple[DIMMN, dict]:
    blob = torch.load(path, map_location=device, weights_only=False)
    config = ModelConfig(**blob["model_config"])
    model = DIMMN(config, blob["dims"], len(blob["classes"]))
    model.load_state_dict(blob["model"])
    return model.to(device).eval(), blob
