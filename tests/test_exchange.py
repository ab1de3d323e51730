"""Export to npz / CSV / conv-emotion pickle, import back, and refuse unsafe pickles."""
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from pipeline.stages.exchange import ExchangeError, export_store, import_mosi, import_pickle
from pipeline.lineage import read_record


def _store():
    rng = np.random.default_rng(0)
    n = 7
    return {"utterance_id": np.array([f"d{i // 4}_u{i % 4}" for i in range(n)]),
            "dialogue_id": np.array([f"d{i // 4}" for i in range(n)]), "turn": np.array([i % 4 for i in range(n)]),
            "speaker": np.array(list("ABABAAB")), "split": np.array(["train"] * 4 + ["test"] * 3),
            "sentence": np.array([f"words {i}" for i in range(n)]), "label": rng.integers(0, 3, n),
            "classes": np.array(["a", "b", "c"]),
            "text": rng.normal(size=(n, 5)).astype(np.float32), "text_present": np.ones(n, bool),
            "audio": rng.normal(size=(n, 4)).astype(np.float32), "audio_present": np.array([1, 1, 1, 1, 0, 1, 1], bool)}


def test_export_then_import_round_trip(tmp_path):
    store = _store()
    store["audio"][4] = 0  # a masked clip is exported as zeros in the pickle layout
    paths = export_store(store, tmp_path, source=None)
    assert {p.name for p in paths} == {"features.npz", "features.csv", "features.pkl"}
    assert read_record(tmp_path / "features.pkl")["classes"] == ["a", "b", "c"]
    back = import_pickle(tmp_path / "features.pkl", classes=["a", "b", "c"])
    order = [list(back["utterance_id"]).index(u) for u in store["utterance_id"]]
    for key in ("text", "audio", "label", "split", "sentence"):
        assert np.array_equal(back[key][order], store[key]), key
    assert list(back["speaker"][order]) == ["M" if s == "A" else "F" for s in store["speaker"]]   # parties
    assert np.array_equal(back["audio_present"][order], store["audio_present"])
    table = pd.read_csv(tmp_path / "features.csv")
    assert len(table) == 7 and np.allclose(table[[f"text_{j}" for j in range(5)]].to_numpy(), store["text"], atol=1e-6)


def _unpack_as_documented(path, layout):
    """What conv-emotion's DialogueRNN/dataloader.py does with the pickle (its documented order)."""
    loaded = pickle.loads(path.read_bytes())
    if layout == "iemocap":
        ids, speakers, labels, text, audio, visual, sentence, train, test = loaded
        parties = {d: [[1, 0] if x == "M" else [0, 1] for x in speakers[d]] for d in train + test}
    else:
        ids, speakers, _, text, audio, sentence, train, test, labels = loaded
        parties = {d: speakers[d] for d in train + test}
    return parties, labels, text, train, test


def test_the_iemocap_layout_reads_right_in_conv_emotions_loader(tmp_path):
    store = _store()
    store["classes"] = np.array(["neutral", "frustrated", "happy", "sad", "angry", "excited"])
    store["label"] = np.array([0, 1, 2, 3, 4, 5, 0])
    export_store(store, tmp_path, formats=("pickle",))
    parties, labels, _, train, test = _unpack_as_documented(tmp_path / "features.pkl", "iemocap")
    assert parties["d0"] == [[1, 0], [0, 1], [1, 0], [0, 1]]         # A and B are two parties, not one
    order = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]   # hap, sad, neu, ang, exc, fru
    assert labels["d0"] == [order.index(store["classes"][i]) for i in store["label"][:4]]
    assert train == ["d0"] and test == ["d1"]
    layout = read_record(tmp_path / "features.pkl")["pickle_layout"]
    assert layout["layout"] == "iemocap" and layout["label_order"] == order


def test_the_meld_layout_reads_right_in_conv_emotions_loader(tmp_path):
    from pipeline.labels import MELD_EMOTIONS

    store = _store()
    store["classes"] = np.array(MELD_EMOTIONS)
    store["speaker"] = np.array(["Ross", "Rachel", "Joey", "Ross", "Monica", "Monica", "Chandler"])
    export_store(store, tmp_path, formats=("pickle",))
    parties, labels, text, train, test = _unpack_as_documented(tmp_path / "features.pkl", "meld")
    assert parties["d0"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]   # one-hot, by first appearance
    assert labels["d0"] == list(store["label"][:4]) and len(text["d0"][0]) == 5
    assert read_record(tmp_path / "features.pkl")["pickle_layout"]["layout"] == "meld"
    back = import_pickle(tmp_path / "features.pkl", classes=MELD_EMOTIONS)
    assert len(back["label"]) == 7 and "visual" not in back


class Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/dimmn_owned",))


@pytest.mark.parametrize("payload", [Evil(), (Evil(), {}, {}, {}, {}, {}, {}, [], [])])
def test_malicious_pickle_is_refused(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ExchangeError, match=r"evil.pkl: refused (posix|os)\.system"):
        import_pickle(path)
    assert not os.path.exists("/tmp/dimmn_owned")


def test_not_a_pickle_and_wrong_shape(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"\x00\x01junk")
    with pytest.raises(ExchangeError, match="junk.pkl: not a readable pickle"):
        import_pickle(tmp_path / "junk.pkl")
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ExchangeError, match="conv-emotion 9-tuple"):
        import_pickle(tmp_path / "dict.pkl")


def test_import_real_mosi_features():
    store = import_mosi(shared("mosi_features"))
    assert len(store["utterance_id"]) == 2199 and len(set(store["dialogue_id"])) == 93
    assert (store["split"] == "train").sum() == 1447
    assert store["text"].shape[1] == 100 and store["audio"].shape[1] == 73 and store["visual"].shape[1] == 100
    assert set(np.unique(store["label"])) == {0, 1}


def test_duplicate_utterance_ids_are_refused_naming_the_file_and_ids(tmp_path, capsys):
    """A store (load, export), a feature file at align and an imported pickle: before, a repeated id
    was accepted (align kept the last row, export and evaluate counted it twice)."""
    from pipeline.cli import main
    from pipeline.errors import PipelineError
    from pipeline.stages.exchange import run_import
    from pipeline.store import align, load_store, save_features, write_npz

    store = _store()
    store["utterance_id"][5] = store["utterance_id"][2]   # d0_u2 twice
    write_npz(tmp_path / "dup.npz", store)
    with pytest.raises(PipelineError, match=r"dup.npz: 1 utterance id\(s\) on more than one row, e.g. \['d0_u2'\]"):
        load_store(tmp_path / "dup.npz")
    code = main(["export", "--store", str(tmp_path / "dup.npz"), "--out", str(tmp_path / "exported")])
    err = capsys.readouterr().err
    assert code == 2 and "dup.npz: 1 utterance id(s)" in err and "'d0_u2'" in err and "Traceback" not in err, err

    clean = _store()
    manifest = pd.DataFrame({k: clean[k] for k in ("utterance_id", "dialogue_id", "speaker", "split", "turn")})
    manifest["text"], manifest["label"] = "", [clean["classes"][i] for i in clean["label"]]
    ids = list(clean["utterance_id"][:3]) + [clean["utterance_id"][0]]
    save_features(tmp_path / "audio.npz", ids, np.ones((4, 2), np.float32), np.ones(4, bool), [""] * 4, "audio", {})
    with pytest.raises(PipelineError, match=r"audio.npz: 1 utterance id\(s\) on more than one row, e.g. \['d0_u0'\]"):
        align(manifest, list(clean["classes"]), {"audio": tmp_path / "audio.npz"}, tmp_path / "store.npz",
              tmp_path / "coverage.json")
    assert not (tmp_path / "store.npz").exists()

    export_store(clean, tmp_path / "pickled", ["pickle"], source=None)
    fields = list(pickle.loads((tmp_path / "pickled" / "features.pkl").read_bytes()))
    fields[8] = list(fields[8]) + [fields[7][0]]   # a dialogue in trainVid and testVid: its ids twice
    (tmp_path / "twice.pkl").write_bytes(pickle.dumps(tuple(fields)))
    with pytest.raises(PipelineError, match=r"twice.pkl: 4 utterance id\(s\) on more than one row"):
        run_import("pickle", tmp_path / "twice.pkl", tmp_path / "imported.npz", classes=["a", "b", "c"])
    assert not (tmp_path / "imported.npz").exists()
