"""The fine-tuned sentence encoder as the text backbone: cross-fitted like the Kim CNN (training
rows get features from fold parts that never saw their labels), cut to ``max_tokens`` word
pieces, and reproducible from its seed."""
import json

import numpy as np

from pipeline.parts import load_part
from pipeline.stages import text
from test_protocol import CLASSES, toy_transcripts

PARAMS = {"backbone": "sentence_transformer", "finetune": True, "finetune_epochs": 1, "finetune_batch_size": 4,
          "finetune_lr": 5e-5, "max_tokens": 16, "folds": 2, "seed": 0}


def build(rows, folder, params=PARAMS):
    matrix, present = text.build(rows, CLASSES, params, folder / "t.npz", folder / "t.pt", folder / "cache")
    return matrix, present, json.loads((folder / "t.npz.meta.json").read_text())


def test_the_fine_tuned_encoder_is_cross_fitted_and_reproducible(tmp_path):
    rows = toy_transcripts(3)                    # 4 training dialogues, one valid, one test
    texts, train = rows["text"].tolist(), (rows["split"] == "train").to_numpy()
    matrix, present, record = build(rows, tmp_path / "a")
    assert matrix.shape == (len(rows), 384) and present.all()

    crossfit = record["crossfit"]
    assert crossfit["folds"] == 2 and len(crossfit["map_r2_on_valid"]) == 2 and crossfit["seed"] == 0
    assert {"train_in_fold", "train_out_of_fold", "valid"} <= set(record["head_accuracy"])
    assert len(list((tmp_path / "a" / "cache" / "text_folds").glob("*.pt"))) == 2

    part = load_part(tmp_path / "a" / "t.pt")
    assert part.config.max_tokens == 16 and part.encoder.max_seq_length == 16
    full = part.transform(texts)
    assert np.allclose(full[~train], matrix[~train], atol=1e-5)      # valid and test: the full part's features
    assert not np.allclose(full[train], matrix[train], atol=1e-3)    # training rows: the fold parts', mapped

    again, _, record_again = build(rows, tmp_path / "b")           # no shared cache: every part refitted
    assert np.allclose(again, matrix, atol=1e-5) and record_again["crossfit"] == crossfit
