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


def test_context_turns_put_the_utterance_first_then_earlier_turns_of_its_dialogue_newest_first():
    import pandas as pd

    rows = pd.DataFrame({"dialogue_id": ["b", "a", "a", "a", "b"], "turn": [0, 2, 0, 1, 1],
                         "speaker": ["X", "A", "B", "A", "Y"], "text": ["x0", "a2", "b0", "", "y1"]})
    plain, present = text.text_inputs(rows)
    assert plain == rows["text"].tolist()
    inputs, with_context = text.text_inputs(rows, context_turns=2)
    np.testing.assert_array_equal(with_context, present)   # which rows have words: their own, not the context's
    # row 1 is a's turn 2: turn 1 is empty (skipped), turn 0 is B's; rows out of order are ordered by turn
    assert inputs == ["X: x0", "A: a2 [SEP] B: b0", "B: b0", "A:  [SEP] B: b0", "Y: y1 [SEP] X: x0"]


def test_context_turns_reach_the_fine_tuned_encoder_and_predict_reads_them_alike(tmp_path):
    from pipeline.stages.predict import featurise

    rows = toy_transcripts(3)
    params = {**PARAMS, "context_turns": 1}
    matrix, _, record = build(rows, tmp_path / "ctx", params)
    plain, _, _ = build(rows, tmp_path / "plain")
    assert record["params"]["context_turns"] == 1 and not np.allclose(matrix, plain, atol=1e-3)
    (tmp_path / "run").mkdir()
    (tmp_path / "ctx" / "t.pt").rename(tmp_path / "run" / "text.pt")
    test = (rows["split"] == "test").to_numpy()
    conversation = rows[test].reset_index(drop=True).assign(utterance_id=lambda f: [f"u{i}" for i in range(len(f))])
    store = featurise(conversation, tmp_path / "run", ["text"], {"text": 384}, CLASSES, tmp_path / "cache")
    np.testing.assert_allclose(store["text"], matrix[test], atol=1e-5)   # the run's own context, as its stage read it


def test_context_turns_with_the_kim_cnn_is_refused_before_any_work(tmp_path):
    import pytest

    from pipeline.errors import ParamsError

    with pytest.raises(ParamsError, match="text.context_turns 1: only the sentence_transformer backbone"):
        build(toy_transcripts(3), tmp_path, {"backbone": "kim_cnn", "context_turns": 1})
    assert not (tmp_path / "t.pt").exists()
