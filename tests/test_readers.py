"""MELD and IEMOCAP release layouts, rebuilt small: clips made by the project's encoder."""
import numpy as np
import pandas as pd
import pytest

from conftest import shared
from extractors.media import load_audio, load_frames, probe, write_clip
from pipeline.datasets import read_dataset
from pipeline.manifest import ManifestError

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def clip(path, seconds=1.0, fps=12):
    rng = np.random.default_rng(len(str(path)))
    frames = rng.integers(0, 255, (max(1, int(seconds * fps)), 48, 64, 3), dtype=np.uint8)
    write_clip(path, frames, fps, rng.normal(0, 0.1, int(seconds * 16000)).astype(np.float32))


@pytest.fixture
def meld_root(tmp_path):
    rows = {
        "train": [("Oh, it’s you.", "Monica", "surprise", "positive", 0, 0), ("I’m fine", "Ross", "neutral", "neutral", 0, 1),
                  ("Go away!", "Rachel", "anger", "negative", 0, 2), ("Hi", "Joey", "joy", "positive", 1, 0)],
        "dev": [("What? He said “no”, again?", "Chandler", "surprise", "negative", 0, 0)],
        "test": [("No way", "Phoebe", "disgust", "negative", 3, 0), ("Yes", "Phoebe", "sadness", "negative", 3, 1)],
    }
    folders = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
    for split, items in rows.items():
        text = MELD_HEADER + "".join(f'{i},"{u}",{s},{e},{st},{d},{k},1,1,"0:0:1,0","0:0:2,0"\n'
                                     for i, (u, s, e, st, d, k) in enumerate(items, 1))
        encoding = "cp1252" if split == "train" else "utf-8"   # the release archive's bytes vs the repository's
        (tmp_path / f"{split}_sent_emo.csv").write_bytes(text.encode(encoding))
        for u, s, e, st, d, k in items:
            if (split, d, k) == ("train", 1, 0):
                continue  # a missing clip
            prefix = "final_videos_test" if (split, k) == ("test", 1) else ""
            clip(tmp_path / folders[split] / f"{prefix}dia{d}_utt{k}.mp4", 0.5)
    assert b"\x92" in (tmp_path / "train_sent_emo.csv").read_bytes()
    return tmp_path


def test_meld_layout(meld_root):
    manifest = read_dataset("meld", meld_root)
    assert len(manifest) == 6 and manifest.attrs["skipped"] == ["train_sent_emo.csv:5: dia1_utt0.mp4 missing from train_splits/"]
    assert manifest["split"].value_counts().to_dict() == {"train": 3, "valid": 1, "test": 2}
    first = manifest[manifest["utterance_id"] == "train_dia0_utt0"].iloc[0]
    assert first["text"] == "Oh, it's you." and first["speaker"] == "Monica" and first["label"] == "surprise"
    assert manifest.loc[manifest["utterance_id"] == "train_dia0_utt1", "text"].item() == "I'm fine"
    assert manifest.loc[manifest["split"] == "valid", "text"].item() == 'What? He said "no", again?'
    assert manifest.attrs["labels"][0] == "neutral" and len(manifest.attrs["labels"]) == 7
    assert manifest["media"].str.contains("final_videos_testdia3_utt1.mp4").any()
    assert manifest.groupby("dialogue_id")["speaker"].nunique()["train_dia0"] == 3
    sentiment = read_dataset("meld", meld_root, labels="sentiment")
    assert set(sentiment["label"]) == {"positive", "neutral", "negative"} and sentiment.attrs["labels"] == ["negative", "neutral", "positive"]


def test_meld_missing_csv_is_an_error(tmp_path):
    with pytest.raises(ManifestError, match="train_sent_emo.csv: MELD CSV not found"):
        read_dataset("meld", tmp_path)


def write_iemocap(root, dialogues):
    """dialogues: {dialog_id: [(speaker, code, text), ...]} -> the release layout, 1.2 s per turn."""
    for dialog, turns in dialogues.items():
        session = root / f"Session{dialog[4]}" / "dialog"
        lines, blocks, t = [], ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n"], 0.3
        counts = {"F": 0, "M": 0}
        for speaker, code, text in turns:
            uid = f"{dialog}_{speaker}{counts[speaker]:03d}"
            counts[speaker] += 1
            lines.append(f"{uid} [{t:08.4f}-{t + 1.0:08.4f}]: {text}")
            blocks.append(f"\n[{t:.4f} - {t + 1.0:.4f}]\t{uid}\t{code}\t[2.5000, 2.5000, 2.5000]\n"
                          f"C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n")
            t += 1.2
        lines.append("M: [BREATHING]")  # not a turn
        (session / "transcriptions").mkdir(parents=True, exist_ok=True)
        (session / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (session / "transcriptions" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (session / "EmoEvaluation" / f"{dialog}.txt").write_text("".join(blocks))
        clip(session / "avi" / "DivX" / f"{dialog}.avi", t + 0.5)


def test_iemocap_layout_segments_labels_and_maps(tmp_path):
    write_iemocap(tmp_path, {
        "Ses01F_impro01": [("F", "neu", "Excuse me."), ("M", "fru", "Do you have your forms?"), ("F", "xxx", "Yeah."),
                           ("M", "exc", "Great!")],
        "Ses02M_script01_1": [("M", "hap", "Hi"), ("F", "ang", "Stop it.")],
        "Ses05F_impro02": [("F", "sad", "I miss him."), ("M", "sur", "Really?")],
    })
    six = read_dataset("iemocap", tmp_path)
    assert len(six) == 6 and six.attrs["dropped"] == {"xxx": 1, "sur": 1}
    assert list(six[six["dialogue_id"] == "Ses01F_impro01"]["speaker"]) == ["F", "M", "M"]
    assert set(six.loc[six["dialogue_id"] == "Ses05F_impro02", "split"]) == {"test"}
    assert set(six["split"]) <= {"train", "valid", "test"} and (six["split"] != "test").sum() == 5
    row = six[six["utterance_id"] == "Ses01F_impro01_M000"].iloc[0]
    assert (row["start"], row["end"], row["label"]) == (1.5, 2.5, "frustrated")
    audio = load_audio(row["media"], row["start"], row["end"])
    frames, times = load_frames(row["media"], start=row["start"], end=row["end"])
    assert abs(len(audio) / 16000 - 1.0) < 1 / 12 and abs(len(frames) / probe(row["media"]).fps - 1.0) <= 1 / 12 + 1e-9
    four = read_dataset("iemocap", tmp_path, label_map="4")
    assert four.attrs["labels"] == ["neutral", "happy", "sad", "angry"]
    assert four.loc[four["utterance_id"] == "Ses01F_impro01_M001", "label"].item() == "happy"   # excited -> happy
    assert four.attrs["dropped"]["fru"] == 1


def test_iemocap_fixture_from_the_real_transcripts_reads_back_the_same():
    table = pd.read_csv(shared("iemocap_text/iemocap_utterances.csv"))
    chosen = ["Ses01F_impro01", "Ses02M_script01_1", "Ses03F_impro06", "Ses05F_impro03", "Ses05M_script02_2"]
    chosen = [d for d in chosen if d in set(table["dialogue_id"])]
    table = table[table["dialogue_id"].isin(chosen)].sort_values(["dialogue_id", "utterance_index"])
    code = {v: k for k, v in {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry", "exc": "excited",
                              "fru": "frustrated"}.items()}
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        write_iemocap(Path(tmp), {d: [(r.speaker, code[r.emotion], str(r.text)) for r in g.itertuples()]
                                  for d, g in table.groupby("dialogue_id")})
        manifest = read_dataset("iemocap", tmp, split="file",
                                split_file=str(shared("iemocap_text/iemocap_utterances.csv")))
        assert len(manifest) == len(table)
        for d, g in table.groupby("dialogue_id"):
            got = manifest[manifest["dialogue_id"] == d]
            assert list(got["label"]) == list(g["emotion"]) and list(got["speaker"]) == list(g["speaker"])
            assert list(got["text"]) == [str(t).strip() for t in g["text"]]
            assert set(got["split"]) == set(g["split"])
