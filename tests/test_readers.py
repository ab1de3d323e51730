"""MELD and IEMOCAP release layouts, rebuilt small: clips made by the project's encoder."""
import re
from pathlib import Path

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


# --- every reader on a relative root; subtitles read right (issue 20) ---

def subtitled_folder(root, srt: str, name="talk", seconds=3.0):
    """A recording (real H.264/AAC) and its .srt in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    clip(root / f"{name}.mp4", seconds)
    (root / f"{name}.srt").write_bytes(srt.encode("utf-8") if isinstance(srt, str) else srt)
    return root


TWO_CUES = "1\n00:00:00,100 --> 00:00:01,000\nAnn: Hello\n\n2\n00:00:01,200 --> 00:00:02,000\nBob: Hi\n"


def _relative_layout(fmt, tmp_path, tiny_corpus):
    if fmt in ("demo", "generic"):
        return tiny_corpus[0]
    if fmt == "subtitles":
        return subtitled_folder(tmp_path / "sub2", TWO_CUES)
    if fmt == "iemocap":
        write_iemocap(tmp_path / "ie", {"Ses01F_impro01": [("F", "neu", "Hi."), ("M", "sad", "Oh.")]})
        return tmp_path / "ie"
    meld_root = tmp_path / "meld"
    meld_root.mkdir()
    for split, folder in (("train", "train_splits"), ("dev", "dev_splits_complete"), ("test", "output_repeated_splits_test")):
        (meld_root / f"{split}_sent_emo.csv").write_text(MELD_HEADER + '1,"Hi",Ross,joy,positive,0,0,1,1,a,b\n')
        clip(meld_root / folder / "dia0_utt0.mp4", 0.5)
    return meld_root


@pytest.mark.parametrize("fmt", ["demo", "generic", "meld", "iemocap", "subtitles"])
def test_every_reader_takes_a_relative_root(fmt, tmp_path, tiny_corpus, monkeypatch):
    root = _relative_layout(fmt, tmp_path, tiny_corpus)
    monkeypatch.chdir(root.parent)
    manifest = read_dataset(fmt, root.name)
    assert len(manifest) >= 2 and all(Path(m).is_file() for m in manifest["media"])
    assert all(Path(m).resolve().is_relative_to(root.resolve()) for m in manifest["media"])


def test_ingest_subtitles_with_a_relative_root_and_labels_from_the_command_line(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    subtitled_folder(tmp_path / "sub2", TWO_CUES)
    (tmp_path / "labels.csv").write_text("utterance_id,label,split\ntalk_0000, happy ,train\ntalk_0001,sad,train\n")
    (tmp_path / "params.yaml").write_text("ingest: {holdout_share: 0.0}\n")
    monkeypatch.chdir(tmp_path)
    common = ["ingest", "--params", "params.yaml", "--format", "subtitles", "--root", "sub2", "--out", "m.csv"]
    assert main(common + ["--labels", "labels.csv"]) == 0
    manifest = pd.read_csv("m.csv")
    assert list(manifest["media"]) == ["sub2/talk.mp4"] * 2 and list(manifest["label"]) == ["happy", "sad"]
    assert main(common + ["--labels", "happy", "sad"]) == 2
    assert "--labels for the subtitles format is one value (a CSV of utterance_id" in capsys.readouterr().err
    assert main(["ingest", "--params", "params.yaml", "--format", "iemocap", "--root", "sub2", "--out", "m.csv",
                 "--labels", "happy"]) == 2
    assert "the iemocap format takes no --labels (IEMOCAP's labels come from label_map" in capsys.readouterr().err


def test_meld_labels_from_the_command_line_are_one_word(meld_root, tmp_path, monkeypatch):
    from pipeline.stages.ingest import run

    (tmp_path / "params.yaml").write_text("ingest: {}\n")
    manifest = run(tmp_path / "m.csv", tmp_path / "params.yaml", "meld", str(meld_root), labels=["sentiment"])
    assert manifest.attrs["labels"] == ["negative", "neutral", "positive"]


def test_cues_in_time_order_without_styling_and_unicode_speakers(tmp_path):
    from pipeline.subtitles import read_cues

    srt = ("1\n00:00:02,000 --> 00:00:03,000\n{\\an8}ÉLODIE: {\\i1}Bonjour{\\i0} toi\n\n"
           "2\n00:00:00,500 --> 00:00:01,500\n<i>Ann:</i> <font color=\"#ffff00\">first</font>\n\n"
           "3\n00:00:01,000 --> 00:00:01,800\nÖzil: over Ann\n\n"
           "4\n00:00:00,500 --> 00:00:00,900\nbob: same start as 2, later in the file\n")
    (tmp_path / "a.srt").write_text(srt, encoding="utf-8")
    cues, counts = read_cues(tmp_path / "a.srt")
    assert [(c["speaker"], c["text"]) for c in cues] == [
        ("Ann", "first"), ("unknown", "bob: same start as 2, later in the file"), ("Özil", "over Ann"),
        ("ÉLODIE", "Bonjour toi")]
    assert [c["line"] for c in cues] == [6, 14, 10, 2]
    assert counts == {"overlapping": 2}     # 4 and 3 overlap 2; 1 starts after every other cue ends


def test_a_windows_1252_srt_is_read_and_a_broken_utf8_one_named(tmp_path):
    from pipeline.subtitles import read_cues

    (tmp_path / "old.srt").write_bytes("1\n00:00:00,100 --> 00:00:01,000\nJos\u00e9: it\u2019s me\n".encode("cp1252"))
    assert read_cues(tmp_path / "old.srt")[0][0]["text"] == "it\u2019s me"
    (tmp_path / "bad.srt").write_bytes("1\n00:00:00,100 --> 00:00:01,000\nJos\u00e9: hi\n".encode() + b"\xe9!\n")
    with pytest.raises(ManifestError, match=r"bad.srt: line 4: byte 0xe9 at offset \d+ is not UTF-8"):
        read_cues(tmp_path / "bad.srt")


def test_duplicate_ids_in_a_subtitles_corpus_name_the_file(tmp_path):
    root = subtitled_folder(tmp_path / "rec", TWO_CUES)
    clip(root / "talk.mkv", 3.0)
    with pytest.raises(ManifestError, match=r"rec/talk.mp4: has the name of talk.mkv"):
        read_dataset("subtitles", root)
    (root / "talk.mkv").unlink()
    (tmp_path / "labels.csv").write_text("utterance_id,label\ntalk_0000,happy\ntalk_0001,sad\ntalk_0000,sad\n")
    with pytest.raises(ManifestError, match=r"labels.csv: line 4: duplicate utterance id 'talk_0000' \(first on line 2\)"):
        read_dataset("subtitles", root, labels=str(tmp_path / "labels.csv"))


def test_reader_errors_name_the_dataset_file_and_line(tmp_path):
    write_iemocap(tmp_path, {"Ses01F_impro01": [("F", "neu", "Hi."), ("M", "sad", "Oh.")]})
    transcript = tmp_path / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    lines = transcript.read_text().splitlines()
    transcript.write_text("\n".join(lines[:2] + [lines[1]] + lines[2:]) + "\n")    # a turn written twice
    with pytest.raises(ManifestError, match=re.escape(f"{transcript}: line 3: duplicate utterance id "
                                                      f"'Ses01F_impro01_M000' (first on line 2)")):
        read_dataset("iemocap", tmp_path)


@pytest.mark.parametrize("text, speaker, words", [
    ("张伟: 你好", "张伟", "你好"), ("张伟：你好", "张伟", "你好"), ("مريم: مرحبا", "مريم", "مرحبا"),
    ("김철수: 안녕하세요", "김철수", "안녕하세요"), ("ÉLODIE: Bonjour", "ÉLODIE", "Bonjour"), ("Ann: hi", "Ann", "hi"),
    ("Dr. Watson: hi", "Dr. Watson", "hi"), ("Ludwig van Beethoven: Ja", "Ludwig van Beethoven", "Ja"),
    ("bob: hi", None, "bob: hi"), ("Note: this is it", None, "Note: this is it"),
    ("The reason is simple: no", None, "The reason is simple: no"), ("At 10:30 sharp", None, "At 10:30 sharp"),
    ("这是一个很长的句子不是名字：好", None, "这是一个很长的句子不是名字：好"),
])
def test_a_name_prefix_in_any_script_is_a_speaker_and_a_sentence_with_a_colon_is_not(text, speaker, words):
    """Before: a name had to start with a capital, so 张伟 (a script without case) was never a
    speaker, while "Note" and "The reason is simple" were."""
    from pipeline.subtitles import split_speaker

    assert split_speaker(text) == (speaker, words)


def test_a_cue_of_dash_lines_is_two_turns_and_a_vtt_beside_the_srt_is_named(tmp_path):
    """"- ANN: coming?" / "- BOB: no." was one turn of speaker unknown with both names in its words;
    a .vtt beside the .srt was ignored without a word."""
    from pipeline.subtitles import read_cues

    (tmp_path / "a.srt").write_text("1\n00:00:01,000 --> 00:00:03,000\n- ANN: are you coming?\n- BOB: no.\n\n"
                                    "2\n00:00:03,500 --> 00:00:04,000\n- not a dialogue, one line\n", encoding="utf-8")
    cues, counts = read_cues(tmp_path / "a.srt")
    assert [(c["speaker"], c["text"]) for c in cues] == [("ANN", "are you coming?"), ("BOB", "no."),
                                                         ("unknown", "- not a dialogue, one line")]
    assert cues[0]["start"] == 1.0 and cues[1]["end"] == 3.0 and cues[0]["end"] == cues[1]["start"] > 2.0
    assert counts == {"dialogue_split": 1}
    root = subtitled_folder(tmp_path / "rec", TWO_CUES)
    (root / "talk.vtt").write_text("WEBVTT\n\n00:00:00.100 --> 00:00:01.000\nother words\n", encoding="utf-8")
    frame = read_dataset("subtitles", root)
    assert list(frame["text"]) == ["Hello", "Hi"]
    assert "talk.vtt: not read (talk.srt beside it is)" in frame.attrs["skipped"]   # ingest prints these
