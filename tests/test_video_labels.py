"""The video corpus's labels CSV read as a user means it (issue 32, section 4)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from extractors.base import Result
from pipeline.cli import main

TURNS = [(0.5, 2.0, "S1", "hello"), (4.5, 7.4, "S2", "no way"), (8.0, 9.5, "S1", "fine"), (10.0, 12.0, "S2", "ok")]


def _fake_transcripts(videos, *args, **kwargs):
    utterances = [{"start": s, "end": e, "speaker": who, "text": text, "words": []} for s, e, who, text in TURNS]
    info = {"utterances": utterances, "speakers": 2, "language": "en", "language_probability": 0.9,
            "overlaps": [], "seconds": 12.0, "model": "tiny.en"}
    return {str(v): Result(np.zeros((len(TURNS), 4), np.float32), info) for v in videos}


@pytest.fixture
def recordings(tiny_corpus, tmp_path, monkeypatch):
    import pipeline.transcripts

    monkeypatch.setattr(pipeline.transcripts, "transcribe", _fake_transcripts)
    root = tmp_path / "videos"
    root.mkdir()
    shutil.copy(tiny_corpus[1]["media"][0], root / "talk.mp4")
    return root


def _ingest(root, tmp_path, labels: str, capsys):
    (tmp_path / "labels.csv").write_text(labels)
    code = main(["ingest", "--format", "video", "--root", str(root), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "m.csv"), "--cache", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    frame = pd.read_csv(tmp_path / "m.csv", keep_default_na=False) if code == 0 else None
    return code, captured.out + captured.err, frame


def test_labels_with_stray_spaces_read_as_a_manifest_reads_them(recordings, tmp_path, capsys):
    """' happy' and 'angry ' gave a false error (a generic manifest accepts them)."""
    code, said, frame = _ingest(recordings, tmp_path, "dialogue,start,end,label\ntalk,0.4,2.1, happy\n"
                                                      " talk ,4.4,7.5,angry \ntalk.mp4,7.9,9.6,neutral\n", capsys)
    assert code == 0, said
    assert frame["label"].tolist()[:3] == ["happy", "angry", "neutral"]   # talk.mp4 and ' talk ' are talk


@pytest.mark.parametrize("name", ["tlak", "Talk", "talk.wav"])
def test_rows_naming_no_recording_are_named_not_dropped_without_a_word(name, recordings, tmp_path, capsys):
    code, said, frame = _ingest(recordings, tmp_path, f"dialogue,start,end,label\ntalk,0.4,2.1,happy\n"
                                                      f"{name},4.4,7.5,angry\n", capsys)
    assert code == 0, said
    assert f"labels.csv: line 3: dialogue {name!r} is no recording here (talk)" in said, said
    record = json.loads((tmp_path / "m.csv.meta.json").read_text())
    assert any(f"dialogue {name!r}" in note for note in record["skipped"])


def test_overlapping_spans_take_the_best_fitting_one_and_say_so(recordings, tmp_path, capsys):
    """talk_0001 got neutral from a 0-20 s span instead of angry from its own 4.5-7.4 s span."""
    code, said, frame = _ingest(recordings, tmp_path, "dialogue,start,end,label\ntalk,0,20,neutral\n"
                                                      "talk,4.5,7.4,angry\n", capsys)
    assert code == 0, said
    assert frame["label"].tolist() == ["neutral", "angry", "neutral", "neutral"]
    assert "talk_0001 (4.50-7.40 s) lies in spans of different labels: took 'angry' (line 3), the span that " \
           "fits it best, over 'neutral' (line 2)" in said, said
    assert not any(f"talk_000{i} (" in said for i in (0, 2, 3))   # the others lie in one labelled span only
