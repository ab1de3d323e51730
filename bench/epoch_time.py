"""Seconds per training epoch of DIMMN on IEMOCAP-sized data: 151 dialogues, 7433 utterances,
features text 100 / audio 100 / visual 512 (random values: only the time matters).

    python bench/epoch_time.py --device auto --epochs 3

The paper reports about 30 s per epoch on an RTX 3060 (TensorFlow). The last line is one JSON
object: {"device", "seconds_per_epoch", "utterances_per_second", ...}.
"""
import argparse
import time

from common import last_line  # first: it pins the CPU kernels before numpy and torch load
import numpy as np
import torch

from model.data import collate, dialogues
from model.dimmn import DIMMN, ModelConfig
from model.train import pick_device


def iemocap_sized(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.multinomial(7433 - 151 * 8, np.ones(151) / 151) + 8   # 151 dialogues, 7433 utterances
    dialogue = np.repeat(np.arange(151), lengths)
    turn = np.concatenate([np.arange(n) for n in lengths])
    n = len(dialogue)
    store = {"dialogue_id": dialogue.astype(str), "turn": turn, "speaker": rng.choice(["M", "F"], n),
             "label": rng.integers(0, 6, n), "split": np.full(n, "train")}
    for m, d in (("text", 100), ("audio", 100), ("visual", 512)):
        store[m] = rng.normal(size=(n, d)).astype(np.float32)
        store[f"{m}_present"] = np.ones(n, bool)
    return store


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    device = pick_device(args.device)
    store = iemocap_sized()
    model = DIMMN(ModelConfig(), {"text": 100, "audio": 100, "visual": 512}, 6).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    groups = dialogues(store, np.ones(len(store["label"]), bool))
    batches = [collate(store, groups[i:i + args.batch_size], model.modalities, device)
               for i in range(0, len(groups), args.batch_size)]
    times = []
    for epoch in range(args.epochs + 1):  # the first epoch warms up (allocations, kernels) and is not counted
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.train()
        for b in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda"):
                logits = model(b["feats"], b["present"], b["mask"], b["speakers"])
                loss = torch.nn.functional.cross_entropy(logits.float()[b["mask"]], b["labels"][b["mask"]])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        print(f"epoch {epoch}: {times[-1]:.2f}s{' (warm-up)' if epoch == 0 else ''}", flush=True)
    per_epoch = float(np.mean(times[1:]))
    last_line({"device": str(device), "name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "threads": torch.get_num_threads(), "seconds_per_epoch": round(per_epoch, 2),
               "utterances_per_second": round(len(store["label"]) / per_epoch, 1)})
