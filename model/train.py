"""Training and prediction for DIMMN and its baselines.

Adam with weight decay, dropout, optional class weights, minibatches of whole dialogues,
early stopping on the validation split's weighted F1, best and last checkpoints (resume from
the last), per-epoch history, fixed seeds. Under ``torchrun`` (WORLD_SIZE > 1) each process
trains on an equal share of the dialogues inside DistributedDataParallel (NCCL on CUDA, gloo
on CPU); rank 0 writes the outputs.

Checkpoints hold tensors and plain values only and load with ``weights_only=True``; each is
written to a temp file and renamed, so a kill mid-write leaves the previous one whole. The
resume state carries every RNG (CPU, CUDA, numpy, the shuffle) and a fingerprint of the store
and settings: resuming onto other data or other settings is refused, and a finished run is
returned as it is (one that stopped early stays stopped; one that ran out of epochs goes on
when ``epochs`` grows).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model.data import collate, dialogues, group_folds, holdout_valid, no_valid_rows_reason
from model.dimmn import DIMMN, ModelConfig
from model.errors import ModelError
from model.layers import Adam
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
    select_on: str = "wf1"         # the validation measure early stopping follows: wf1 | loss
    cv_folds: int = 0              # >= 2: choose the epoch count by grouped K-fold CV, then refit on train + valid
    resume: bool = False

    CHOICES = {"select_on": ("wf1", "loss")}


RESUMABLE_CHANGES = {"resume", "epochs", "device"}   # settings a resumed run may change


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ModelError(f"train.device {name!r}: this machine has {count} CUDA device(s); use auto or cpu")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"train.device {name!r}: this machine has no MPS device; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed every generator and ask CUDA for its deterministic kernels: without them cuDNN picks
    convolution algorithms by timing and index-add backward passes race, so two GPU runs with one
    seed differ. CPU kernels are deterministic already."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # cuBLAS's deterministic workspace
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)     # warn where no such kernel exists


def feature_dims(store: dict, modalities) -> dict:
    return {m: int(store[m].shape[1]) for m in modalities if m in store}


def build_model(store: dict, config: ModelConfig) -> DIMMN:
    return DIMMN(config, feature_dims(store, config.modalities), len(store["classes"]))


def fingerprint(store: dict, model_config: ModelConfig, cfg: TrainConfig) -> str:
    """sha256 of the store's arrays and the settings that shape training (not ``RESUMABLE_CHANGES``)."""
    digest = hashlib.sha256()
    for key in sorted(store):
        array = np.ascontiguousarray(store[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    settings = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    digest.update(json.dumps([asdict(model_config), settings], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device) under torchrun; (0, 1, device) otherwise.
    On CUDA each process takes the GPU of its local rank (NCCL); on CPU the processes use gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        local, gpus = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
        if local >= gpus:
            raise ModelError(f"torchrun started a process of local rank {local} on a node with {gpus} GPU(s): "
                             f"start at most {gpus} per node (--nproc_per_node), or set train.device: cpu")
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


@torch.no_grad()
def predict_probs(model: DIMMN, store: dict, rows_mask: np.ndarray, device, batch_size: int = 16, amp: bool = False):
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
    """Metrics and the mean cross-entropy on the labelled rows of ``mask`` (NaN when there are none)."""
    rows, probs = predict_probs(model, store, mask, device, amp=cfg.amp)
    truth = store["label"][rows]
    labelled = truth >= 0
    if not labelled.any():
        return {"acc": float("nan"), "wf1": float("nan"), "loss": float("nan")}
    metrics = classification_metrics(truth[labelled], probs[labelled].argmax(1), list(store["classes"]))
    picked = probs[labelled, truth[labelled]]
    metrics["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return metrics


def _score(metrics: dict, cfg: TrainConfig) -> float:
    """Higher is better: weighted F1, or minus the loss."""
    if cfg.select_on not in ("wf1", "loss"):
        raise ModelError(f"train.select_on must be wf1 or loss, not {cfg.select_on!r}")
    return metrics["wf1"] if cfg.select_on == "wf1" else -metrics["loss"]


def _rng_state(generator: torch.Generator) -> dict:
    numpy_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "shuffle": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"key": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                      "has_gauss": int(numpy_state[3]), "gauss": float(numpy_state[4])}}


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["shuffle"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]][:torch.cuda.device_count()])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def save_atomic(blob: dict, path) -> None:
    """torch.save to a temp file, fsync, rename: a kill mid-write leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(blob, handle)
            handle.flush()
            os.fsync(handle.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)   # mkstemp makes it private; a checkpoint is shared like any output
        os.replace(tmp, path)
    except OSError as exc:   # a full disk, a directory in the way: name the checkpoint, not the temp file
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_blob(path, what: str) -> dict:
    """A checkpoint of tensors and plain values; code in it (or a torn file) is refused, naming the file."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ModelError(f"{path}: the {what} is not a file")
    if not path.is_file():
        raise ModelError(f"{path}: {what} not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]   # an empty file's error has no text
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):   # not torch's advice to unpickle it
            first = "it holds pickled objects, not only tensors and plain values; never load it with weights_only=False"
        raise ModelError(f"{path}: not a {what} this pipeline wrote, or damaged (refused: {first[:200]})") from exc
    if not isinstance(blob, dict):
        raise ModelError(f"{path}: not a {what} this pipeline wrote (it holds a {type(blob).__name__})")
    return blob


def _load_resume(last_path: Path) -> dict | None:
    if not last_path.exists():
        return None
    state = load_blob(last_path, "resume checkpoint")
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise ModelError(f"{last_path}: a resume checkpoint without a fingerprint (written by an older "
                         f"version); delete it to train from scratch")
    return state


def _split_masks(store: dict, cfg: TrainConfig, select: bool = True):
    """Training rows (unlabelled ones stay as context; the loss ignores them) and labelled valid rows."""
    if select:
        train_mask, valid_mask = holdout_valid(store["split"], store["dialogue_id"], cfg.seed, cfg.valid_share)
    else:   # a refit for a chosen epoch count: every training dialogue trains, none is held out
        train_mask, valid_mask = store["split"] == "train", np.zeros(len(store["split"]), bool)
    labelled = store["label"] >= 0
    if not (train_mask & labelled).any():
        raise ModelError("no labelled utterance in the train split: nothing to train on")
    if select and not (valid_mask & labelled).any():
        why = no_valid_rows_reason(store["split"], store["dialogue_id"], valid_mask, labelled,
                                   holdout_keys="train.seed or train.valid_share")
        raise ModelError(f"no labelled utterance to validate on (early stopping would pick epoch 0 blindly): {why}")
    return train_mask, valid_mask & labelled


def describe(exc: BaseException) -> str:
    """An error as the pipeline prints it: a file's name and the system's words for an OSError."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def together(failure: BaseException | None, rank: int, world: int, device, where: str) -> None:
    """A point every rank reaches: if one failed there (``failure``), every rank stops, each with
    one line: the failing rank its own error, the others "rank N failed ...". Each rank prints its
    line before any leaves (torchrun stops the rest when one process exits, and a rank killed so says
    nothing), and the error raised is marked ``reported`` for the CLI not to print it again."""
    if world == 1:
        if failure is not None:
            raise failure
        return
    flag = torch.tensor([int(failure is not None)], device=device)
    flags = [torch.zeros_like(flag) for _ in range(world)]
    dist.all_gather(flags, flag)
    failed = [r for r, f in enumerate(flags) if f.item()]
    if not failed:
        return
    if failure is not None:
        line = f"rank {rank}: {describe(failure)}"
    else:
        which = f"rank {failed[0]}" if len(failed) == 1 else f"ranks {failed}"
        line = (f"rank {rank}: stopped because {which} failed {where}; {'its' if len(failed) == 1 else 'their'} "
                f"message says why")
    print(f"error: {line}", file=sys.stderr, flush=True)
    dist.barrier()   # every line printed before any rank leaves
    stop = ModelError(line)
    stop.reported = True
    raise stop from failure


def _lost_peer(exc: BaseException) -> bool:
    """A collective that failed because another process of the run went away (gloo, NCCL)."""
    return isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and any(
        word in str(exc) for word in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset")))


def train(store: dict, model_config: ModelConfig, cfg: TrainConfig, checkpoint=None, progress: bool = True):
    """Train on the store's train split; return (selected model, history, summary).

    ``cv_folds`` < 2: early stopping on the valid split's ``select_on`` measure. Otherwise the epoch
    count is chosen by grouped K-fold cross-validation over the train and valid dialogues, and the
    model is refit on all of them for that many epochs. Test rows are never read. Under
    torchrun a failure on one rank stops every rank with one line (``together``); a collective broken
    by another rank's end is one line too, not a traceback.
    """
    try:
        return _train(store, model_config, cfg, checkpoint, progress)
    except RuntimeError as exc:
        if int(os.environ.get("WORLD_SIZE", "1")) == 1 or not _lost_peer(exc):
            raise
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"rank {os.environ.get('RANK', '?')}: another process of this torchrun ended ({first}); "
                         f"its own message says why") from exc


def _train(store: dict, model_config: ModelConfig, cfg: TrainConfig, checkpoint=None, progress: bool = True):
    """``train`` without the translation of a lost peer."""
    if cfg.cv_folds < 2:
        return _fit(store, model_config, cfg, checkpoint, progress)
    epochs, curve = choose_epochs(store, model_config, cfg)
    pooled = dict(store, split=np.where(store["split"] == "valid", "train", store["split"]))
    model, history, summary = _fit(pooled, model_config, replace(cfg, epochs=epochs, cv_folds=0), checkpoint,
                                   progress, select=False)
    summary.update(selection=f"{cfg.cv_folds}-fold grouped CV over the train and valid dialogues chose {epochs} "
                             f"epochs by mean valid {cfg.select_on}; refit on all of them",
                   cv_mean_curve=[round(v, 4) for v in curve])
    return model, history, summary


def choose_epochs(store: dict, model_config: ModelConfig, cfg: TrainConfig) -> tuple[int, list[float]]:
    """The epoch count with the best mean validation measure over K grouped folds of the train and
    valid dialogues (each fold trains for ``epochs`` without stopping early)."""
    pool = np.isin(store["split"], ("train", "valid"))
    folds = group_folds(store["dialogue_id"], pool, cfg.cv_folds, cfg.seed)
    curves = []
    for fold in range(cfg.cv_folds):
        split = np.where(folds == fold, "valid", np.where(pool, "train", store["split"]))
        _, history, _ = _fit(dict(store, split=split), model_config,
                             replace(cfg, cv_folds=0, patience=cfg.epochs, resume=False), None, False)
        curves.append([_score(h_metrics(h), cfg) for h in history])
    mean = np.mean(curves, axis=0)
    return int(np.argmax(mean)) + 1, mean.tolist()


def _fit(store: dict, model_config: ModelConfig, cfg: TrainConfig, checkpoint=None, progress: bool = True,
         select: bool = True):
    """Train; with ``select``, keep the epoch best on valid and stop early; else keep the last epoch."""
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    # every input checked on every rank before any process group: a bad store stops each rank with
    # its own line, and no rank waits on (or breaks the connection of) another
    train_mask, valid_mask = _split_masks(store, cfg, select)
    stats_rows = train_mask & (store["label"] >= 0)
    model = build_model(store, model_config)
    model.set_input_stats(training_inputs(store, model.modalities, stats_rows))
    mark = fingerprint(store, model_config, cfg)
    last_path = Path(str(checkpoint) + ".last") if checkpoint else None
    state = _load_resume(last_path) if cfg.resume and last_path else None
    if state is not None and state["fingerprint"] != mark:
        raise ModelError(f"{last_path}: this resume checkpoint was made with another store or other settings "
                         f"(only {sorted(RESUMABLE_CHANGES)} may change); delete it or set train.resume: false")
    rank, world, device = _distributed(device)
    model = model.to(device)
    optimiser = Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_classes = len(store["classes"])
    weight = None
    if cfg.class_weights:
        counts = np.bincount(store["label"][stats_rows], minlength=n_classes).astype(float)
        weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / n_classes, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight, ignore_index=-1)
    generator = torch.Generator().manual_seed(cfg.seed)
    print_ = print if rank == 0 else (lambda *a, **k: None)
    history, best, best_state, waited, start_epoch, finished = [], -float("inf"), None, 0, 0, False
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history, best, waited, start_epoch = state["history"], state["best"], state["waited"], state["epoch"] + 1
        best_state, finished = state["best_state"], state["stopped_early"]
        _set_rng_state(state["rng"], generator)
        print_(f"train: resumed after epoch {state['epoch']} from {last_path}" + (" (it had stopped early)" if finished else ""))
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    train_dialogues = dialogues(store, train_mask)
    epochs = range(start_epoch, cfg.epochs) if not finished else range(0)
    bar = tqdm(epochs, desc=f"train {model_config.mode}", unit="epoch", disable=None if progress and rank == 0 else True)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_dialogues), generator=generator).tolist()
        if world > 1:   # pad to a multiple of the world size (as DistributedSampler does): equal steps per rank
            order += (order * world)[:(-len(order)) % world]
        mine = order[rank::world]
        total, seen = 0.0, 0
        for i in range(0, len(mine), cfg.batch_size):
            batch = collate(store, [train_dialogues[j] for j in mine[i:i + cfg.batch_size]], model.modalities, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
                logits = net(batch["feats"], batch["present"], batch["mask"], batch["speakers"])
                loss = loss_fn(logits.float().reshape(-1, n_classes), batch["labels"].reshape(-1))
            failure = None if torch.isfinite(loss) else ModelError(
                f"the training loss became {loss.item()} at epoch {epoch}: training stopped, no model written; "
                f"lower train.lr (now {cfg.lr}) or check the store's features")
            together(failure, rank, world, device, f"at epoch {epoch} (a non-finite training loss)")
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimiser.step()
            count = int((batch["labels"] >= 0).sum())
            total, seen = total + loss.item() * count, seen + count
        train_metrics = _evaluate(model, store, stats_rows, device, cfg)
        valid_metrics = _evaluate(model, store, valid_mask, device, cfg)
        history.append({"epoch": epoch, "loss": total / max(seen, 1), "train_acc": train_metrics["acc"],
                        "valid_acc": valid_metrics["acc"], "valid_wf1": valid_metrics["wf1"],
                        "valid_loss": valid_metrics["loss"]})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", valid_wf1=f"{valid_metrics['wf1']:.1f}")
        score = _score(valid_metrics, cfg) if select else float(epoch)   # without selection: the last epoch
        if score > best:
            best, best_state, waited = score, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
        if last_path:
            failure = None
            if rank == 0:
                try:
                    save_atomic({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                 "history": history, "best": best, "best_state": best_state, "waited": waited,
                                 "epoch": epoch, "stopped_early": waited >= cfg.patience,
                                 "rng": _rng_state(generator), "fingerprint": mark}, last_path)
                except (OSError, RuntimeError) as exc:   # a full disk; torch.save's own write errors
                    failure = exc
            together(failure, rank, world, device, f"writing {last_path} after epoch {epoch}")
        if waited >= cfg.patience:
            break
    if best_state is None:
        raise ModelError(f"no epoch was trained (train.epochs is {cfg.epochs})")
    model.load_state_dict(best_state)
    chosen = max(history, key=lambda h: _score(h_metrics(h), cfg)) if select else history[-1]
    summary = {"best_valid_wf1": chosen["valid_wf1"], "epochs_run": len(history), "device": str(device),
               "world_size": world, "train_utterances": int(stats_rows.sum()), "valid_utterances": int(valid_mask.sum()),
               "selected_epoch": int(chosen["epoch"]),
               "selection": f"early stopping on valid {cfg.select_on} (patience {cfg.patience})" if select
               else f"the last of {cfg.epochs} epochs"}
    if world > 1:
        summary["ddp_params_identical"] = _params_identical(model)
    if checkpoint and rank == 0:
        save_checkpoint(model, store, model_config, cfg, checkpoint, summary)
    return model, history, summary


def training_inputs(store: dict, modalities, rows: np.ndarray) -> dict:
    """Each modality's present training rows, for the input statistics. A modality no training
    row has, or any non-finite value in a present row, is an error: either would train on NaN."""
    feats = {}
    for m in modalities:
        if m not in store:
            raise ModelError(f"the store has no {m} features (model.modalities is {list(modalities)})")
        present = np.asarray(store.get(f"{m}_present", np.ones(len(rows), bool)), bool)
        bad = ~np.isfinite(store[m]).all(axis=1)   # absent rows too: NaN times a zero mask is NaN
        ids = store.get("utterance_id", np.arange(len(bad)))
        if (bad & present).any():
            raise ModelError(f"{int((bad & present).sum())} utterance(s) have non-finite {m} features (e.g. "
                             f"{ids[np.flatnonzero(bad & present)[0]]!r}) in rows marked present: the store is "
                             f"damaged; rebuild it with align")
        if bad.any():   # a store built in code: load_store reads such rows as zeros
            raise ModelError(f"{int(bad.sum())} utterance(s) marked absent hold non-finite {m} values (e.g. "
                             f"{ids[np.flatnonzero(bad)[0]]!r}): an absent row must hold zeros")
        mine = rows & present
        if not mine.any():
            raise ModelError(f"no labelled training utterance has {m} features (0 of {int(rows.sum())} present): "
                             f"drop {m} from model.modalities, or check the {m} stage's coverage")
        feats[m] = store[m][mine]
    return feats


def h_metrics(entry: dict) -> dict:
    """A history entry's valid measures under the names ``_score`` reads."""
    return {"wf1": entry["valid_wf1"], "loss": entry["valid_loss"]}


def _params_identical(model) -> bool:
    flat = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered)


def save_checkpoint(model, store, model_config, train_config, path, summary) -> None:
    save_atomic({"model": model.state_dict(), "model_config": asdict(model_config),
                 "train_config": asdict(train_config), "dims": feature_dims(store, model_config.modalities),
                 "classes": [str(c) for c in store["classes"]], "summary": summary}, path)


def check_store_fits(store: dict, blob: dict, store_name, checkpoint_name) -> None:
    """The store must hold the checkpoint's classes in its order and each modality at the
    dimension the model reads: else metrics would come out under the wrong names, or not at all."""
    ours, theirs = [str(c) for c in store["classes"]], [str(c) for c in blob["classes"]]
    if ours != theirs:
        raise ModelError(f"{store_name}: its classes {ours} are not the model's {theirs} (in that order) from "
                         f"{checkpoint_name}: labels would be read under the wrong names; use the store the model "
                         f"was trained on, or retrain")
    for m, dim in blob["dims"].items():
        if m not in store:
            raise ModelError(f"{store_name}: has no {m} features, which the model {checkpoint_name} reads")
        if store[m].ndim != 2 or store[m].shape[1] != dim:
            raise ModelError(f"{store_name}: {m} features are {store[m].shape[-1]}-d, but the model "
                             f"{checkpoint_name} reads {dim}-d: the store comes from another run")


def load_checkpoint(path, device="cpu") -> tuple[DIMMN, dict]:
    blob = load_blob(path, "model checkpoint")
    try:
        config = ModelConfig(**blob["model_config"])
        model = DIMMN(config, blob["dims"], len(blob["classes"]))
        model.load_state_dict(blob["model"])
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as exc:   # ModelError is a ValueError
        raise ModelError(f"{path}: not a DIMMN checkpoint this pipeline wrote ({str(exc)[:300]})") from exc
    damaged = [name for name, tensor in model.state_dict().items()
               if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if damaged:   # NaN weights: every prediction the first class, exit 0
        raise ModelError(f"{path}: damaged checkpoint: non-finite values in {damaged[:3]}; train it again")
    return model.to(device).eval(), blob
