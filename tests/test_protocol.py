"""Results a researcher can trust (issue 9): out-of-fold features for training rows, selection
that never reads test, and the selection options."""
import json

import numpy as np
import pandas as pd
import pytest

from model.dimmn import ModelConfig
from model.train import TrainConfig, train
from pipeline.crossfit import cross_fit
from pipeline.stages import text
from test_model import make_store

SMALL = ModelConfig(d=16, K=3, L=2)


class RowsPart:
    """A stand-in part that remembers which rows it was fitted on."""

    def __init__(self, mask):
        self.rows = mask.copy()

    def transform_rows(self, mask):
        idx = np.flatnonzero(mask)
        return np.stack([idx, self.rows[idx]], axis=1).astype(np.float32)


def test_no_training_row_gets_a_feature_from_a_part_that_saw_its_label():
    n = 60
    dialogue = np.array([f"d{i // 5}" for i in range(n)])
    train, valid = np.arange(n) < 40, (np.arange(n) >= 40) & (np.arange(n) < 50)
    full_part = RowsPart(train)
    full = full_part.transform_rows(np.ones(n, bool))
    result = cross_fit(RowsPart, lambda part, mask: part.transform_rows(mask), full, dialogue, train, train, valid,
                       k=4, seed=0)
    assert set(result.source[train]) == {0, 1, 2, 3} and (result.source[~train] == -1).all()
    for i in np.flatnonzero(train):
        assert not result.parts[result.source[i]].rows[i]           # its fold's part never saw row i
        assert len(set(dialogue[result.source == result.source[i]]) & set(dialogue[~(result.source == result.source[i])
                                                                                    & train])) == 0
    assert np.array_equal(result.features[~train], full[~train])      # valid and test: the full part's


CLASSES = ["neutral", "happy", "sad", "angry"]


def toy_transcripts(repeats: int) -> pd.DataFrame:
    """Dialogues of 4 utterances whose words give the label away; the last dialogues are valid, then test."""
    texts = ["I love it", "great day", "so sad today", "I miss you", "I hate this", "ridiculous stuff",
             "okay then", "fine sure"] * repeats
    labels = ["happy", "happy", "sad", "sad", "angry", "angry", "neutral", "neutral"] * repeats
    n = len(texts)
    held = 4 * (repeats // 3)                      # one valid and one test dialogue per 3 repeats
    split = ["train"] * (n - 2 * held) + ["valid"] * held + ["test"] * held
    return pd.DataFrame({"utterance_id": [f"u{i}" for i in range(n)], "dialogue_id": [f"d{i // 4}" for i in range(n)],
                         "split": split, "text": texts, "label": labels, "turn": [i % 4 for i in range(n)],
                         "speaker": "A"})


def test_the_text_stage_cross_fits_and_says_so(tmp_path):
    rows = toy_transcripts(6)
    params = {"embedding_dim": 16, "feature_maps": 8, "epochs": 8, "w2v_epochs": 2, "lr": 0.02, "folds": 4}
    text.build(rows, CLASSES, params, tmp_path / "text.npz", tmp_path / "cnn.pt", tmp_path / "cache")
    record = json.loads((tmp_path / "text.npz.meta.json").read_text())
    assert record["crossfit"]["folds"] == 4 and len(record["crossfit"]["map_r2_on_valid"]) == 4
    assert {"train_in_fold", "train_out_of_fold", "valid"} <= set(record["head_accuracy"])
    assert len(list((tmp_path / "cache" / "text_folds").glob("*.pt"))) == 4   # cached: a re-run refits none


def test_a_stage_record_does_not_go_stale_when_another_stage_s_params_change(tmp_path):
    """The text and media stages hashed all of params.yaml into their lineage record, while DVC
    reruns them only when their own section changes: a change to train's section left every
    committed record (and dvc.lock) stale until a full rebuild. The record holds the stage's
    section; the params file is not hashed whole."""
    from pipeline.lineage import write_record
    from pipeline.manifest import write_manifest

    manifest = tmp_path / "manifest.csv"
    write_manifest(toy_transcripts(3).assign(dataset="toy", media="", start=np.nan, end=np.nan), manifest)
    write_record(manifest, "ingest", {}, extra={"labels": CLASSES})
    stage = "text: {embedding_dim: 16, feature_maps: 8, epochs: 2, w2v_epochs: 1, folds: 0}\n"
    records = []
    for run, other in enumerate(("train: {epochs: 3}", "train: {epochs: 4}")):
        params = tmp_path / f"params{run}.yaml"
        params.write_text(stage + other + "\n")
        text.run(manifest, tmp_path / f"text{run}.npz", tmp_path / f"cnn{run}.pt", params, tmp_path / "cache")
        records.append(json.loads((tmp_path / f"text{run}.npz.meta.json").read_text()))
    assert records[0]["params"] == records[1]["params"] and records[0]["inputs"] == records[1]["inputs"]
    assert list(records[0]["inputs"]) == [str(manifest)]


def test_selection_never_reads_test():
    store = make_store(n_dialogues=8)
    other = {k: v.copy() for k, v in store.items()}
    test = other["split"] == "test"
    other["label"][test] = (other["label"][test] + 1) % 3
    for m in ("text", "audio", "visual"):
        other[m][test] = np.random.default_rng(1).normal(size=other[m][test].shape)
    for cfg in (TrainConfig(epochs=4, seed=2), TrainConfig(epochs=3, seed=2, cv_folds=3, select_on="loss")):
        _, h1, s1 = train(store, SMALL, cfg, progress=False)
        _, h2, s2 = train(other, SMALL, cfg, progress=False)
        assert json.dumps([h1, s1]) == json.dumps([h2, s2])   # NaN-aware: a refit has no valid columns


def test_selection_by_loss_and_by_cross_validated_epochs():
    store = make_store(n_dialogues=8)
    _, history, summary = train(store, SMALL, TrainConfig(epochs=5, patience=5, select_on="loss"), progress=False)
    best = min(history, key=lambda h: h["valid_loss"])
    assert summary["selected_epoch"] == best["epoch"] and "valid loss" in summary["selection"]
    _, history, summary = train(store, SMALL, TrainConfig(epochs=4, cv_folds=3), progress=False)
    chosen = int(np.argmax(summary["cv_mean_curve"])) + 1
    assert len(history) == chosen and "3-fold grouped CV" in summary["selection"]
    assert summary["train_utterances"] == int(np.isin(store["split"], ("train", "valid")).sum())


def test_unlabelled_utterances_stay_in_their_dialogue_as_context():
    store = make_store(n_dialogues=6)
    store["label"][1] = -1
    _, _, summary = train(store, SMALL, TrainConfig(epochs=1), progress=False)
    assert summary["train_utterances"] == int(((store["split"] == "train") & (store["label"] >= 0)).sum())
    with pytest.raises(Exception, match="select_on must be wf1 or loss"):
        train(store, SMALL, TrainConfig(epochs=1, select_on="acc"), progress=False)


@pytest.mark.parametrize("finetune", [False, True])
def test_the_sentence_transformer_backbone(tmp_path, finetune):
    from pipeline.parts import load_part

    rows = toy_transcripts(3)
    texts, n = rows["text"].tolist(), len(rows)
    params = {"backbone": "sentence_transformer", "finetune": finetune, "finetune_epochs": 1, "folds": 2}
    matrix, present = text.build(rows, CLASSES, params, tmp_path / "t.npz", tmp_path / "t.pt", tmp_path / "cache")
    assert matrix.shape == (n, 384) and present.all()
    record = json.loads((tmp_path / "t.npz.meta.json").read_text())
    assert record["crossfit"]["folds"] == (2 if finetune else 0)      # frozen learns no label: nothing to cross-fit
    again = load_part(tmp_path / "t.pt").transform(texts[-4:])
    assert np.allclose(again, matrix[-4:], atol=1e-5)                  # test rows: the saved part's own features
