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
    for key in ("text", "audio", "label", "speaker", "split", "sentence"):
        assert np.array_equal(back[key][order], store[key]), key
    assert np.array_equal(back["audio_present"][order], store["audio_present"])
    table = pd.read_csv(tmp_path / "features.csv")
    assert len(table) == 7 and np.allclose(table[[f"text_{j}" for j in range(5)]].to_numpy(), store["text"], atol=1e-6)


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
