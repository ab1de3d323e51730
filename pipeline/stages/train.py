"""Train DIMMN (or a baseline) on the store; write the checkpoint, history, summary and record.

Imports torch, numpy and the store only: no media library is needed to train.
"""
from __future__ import annotations

import json
import os

import pandas as pd

from model.dimmn import ModelConfig
from model.train import TrainConfig, train
from pipeline.artifacts import atomic_write, check_writable
from pipeline.lineage import write_record
from pipeline.params import configs, params_file, section
from pipeline.store import load_store


def run(store_path, checkpoint, history_path, summary_path, params_path, progress=True):
    model_params, train_params = section("model", params_path), section("train", params_path)
    model_config = configs("model", model_params, ModelConfig)
    train_config = configs("train", train_params, TrainConfig)
    check_writable(checkpoint, unrecorded=[history_path, summary_path], inputs=[store_path, params_file(params_path)],
                   stage="train")
    store = load_store(store_path)
    _, history, summary = train(store, model_config, train_config, checkpoint=checkpoint, progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return summary
    table = pd.DataFrame(history)
    atomic_write(history_path, lambda handle: table.to_csv(handle, index=False))
    atomic_write(summary_path, lambda handle: handle.write((json.dumps(summary, indent=2) + "\n").encode()))
    write_record(checkpoint, "train", {"model": model_params, "train": train_params}, inputs=[store_path],
                 extra=summary)
    print(f"train: best valid wF1 {summary['best_valid_wf1']:.1f} after {summary['epochs_run']} epochs "
          f"on {summary['device']} -> {checkpoint}")
    return summary
