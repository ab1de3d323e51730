"""No command writes over one of its inputs or over a file it did not write (issue 32, section 1).

Every stage names its outputs and inputs to ``pipeline.artifacts.check_writable`` before any
work; these cases each lost a user's file (exit 0) before it did.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from extractors.base import Result
from pipeline.cli import main
from test_model import make_store


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def folder(tiny_corpus, tmp_path):
    """A user's folder: the tiny corpus's clips, its manifest, a labels CSV, a store and params."""
    root, manifest = tiny_corpus
    mine = tmp_path / "mine"
    shutil.copytree(root, mine)
    (mine / "labels.csv").write_text("dialogue,start,end,label\nclip,0,1,happy\n")
    (mine / "params.yaml").write_text("model: {d: 16, K: 3, L: 2}\ntrain: {epochs: 1}\n")
    (mine / "notes.pt").write_bytes(b"my own notes")
    np.savez(mine / "store.npz", **make_store())
    assert main(["ingest", "--format", "demo", "--root", str(root), "--out", str(mine / "m.csv")]) == 0
    return mine


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _clip(folder: Path) -> Path:
    return sorted((folder / "clips").glob("*.mp4"))[0]


# every output named: were one refused too late, its default path (in the working folder) would be written
TRAIN_LOGS = ["--history", "{d}/h.csv", "--summary", "{d}/s.json"]
MEDIA = ["--model", "{d}/a.pt", "--cache", "{d}/cache"]
# (argv with {d} for the folder, words of the error): each names an output that is an input or a user's file
CASES = {
    "ingest over its own manifest": (["ingest", "--format", "demo", "--root", "{d}", "--out", "{d}/manifest.csv"],
                                     "is a file of the input folder"),
    "generic ingest over the CSV it reads": (["ingest", "--format", "generic", "--root", "{d}", "--csv",
                                              "{d}/manifest.csv", "--out", "{d}/manifest.csv"], "is an input"),
    "ingest over a recording": (["ingest", "--format", "video", "--root", "{d}/clips", "--out", "{clip}", "--cache",
                                 "{d}/cache"],
                                "is a file of the input folder"),
    "ingest over its labels": (["ingest", "--format", "video", "--root", "{d}/clips", "--labels", "{d}/labels.csv",
                                "--out", "{d}/labels.csv", "--cache", "{d}/cache"], "is an input"),
    "ingest over its params": (["ingest", "--format", "demo", "--root", "{d}", "--params", "{d}/params.yaml",
                                "--out", "{d}/params.yaml"], "is an input"),
    "audio over its manifest": (["audio", "--manifest", "{d}/m.csv", "--out", "{d}/m.csv", *MEDIA],
                                "is an input"),
    "visual's part over its manifest": (["visual", "--manifest", "{d}/m.csv", "--model", "{d}/m.csv", "--out", "{d}/v.npz",
                                         "--cache", "{d}/cache"],
                                        "is an input"),
    "text over its manifest": (["text", "--manifest", "{d}/m.csv", "--model", "{d}/m.csv", "--out", "{d}/t.npz",
                                "--cache", "{d}/cache"],
                               "is an input"),
    "train over its store": (["train", "--params", "{d}/params.yaml", "--store", "{d}/store.npz",
                              "--checkpoint", "{d}/store.npz", *TRAIN_LOGS], "is an input"),
    "train's history over its store": (["train", "--params", "{d}/params.yaml", "--store", "{d}/store.npz",
                                        "--checkpoint", "{d}/m.pt", "--history", "{d}/store.npz",
                                        "--summary", "{d}/s.json"], "is an input"),
    "train's summary over its params": (["train", "--params", "{d}/params.yaml", "--store", "{d}/store.npz",
                                         "--checkpoint", "{d}/m.pt", "--summary", "{d}/params.yaml",
                                         "--history", "{d}/h.csv"], "is an input"),
    "train over a user's file": (["train", "--params", "{d}/params.yaml", "--store", "{d}/store.npz",
                                  "--checkpoint", "{d}/notes.pt", *TRAIN_LOGS], "was not written by train"),
    "align over its manifest": (["align", "--manifest", "{d}/m.csv", "--features", "{d}", "--out", "{d}/s.npz",
                                 "--report", "{d}/m.csv"], "is an input"),
    "export over its store": (["export", "--store", "{d}/features.npz", "--out", "{d}", "--formats", "npz"],
                              "is an input"),
    "import over its pickle": (["import", "--format", "pickle", "--src", "{d}/notes.pt", "--out", "{d}/notes.pt"],
                               "is an input"),
    "evaluate over its store": (["evaluate", "--store", "{d}/predictions.csv", "--checkpoint", "{d}/store.npz",
                                 "--out", "{d}"], "is an input"),
    "report over its store": (["report", "--store", "{d}/store.npz", "--out", "{d}/store.npz", "--checkpoint",
                               "{d}/m.pt", "--eval", "{d}/eval", "--history", "{d}/h.csv", "--summary", "{d}/s.json",
                               "--features", "{d}"], "is an input"),
    "audio's part over its features": (["audio", "--manifest", "{d}/m.csv", "--out", "{d}/a.npz", "--model",
                                        "{d}/a.npz", "--cache", "{d}/cache"], "named for two outputs"),
    "train's summary over its history": (["train", "--params", "{d}/params.yaml", "--store", "{d}/store.npz",
                                          "--checkpoint", "{d}/m.pt", "--history", "{d}/h.csv", "--summary",
                                          "{d}/h.csv"], "named for two outputs"),
    "demo over its params": (["demo", "--out", "{d}", "--params", "{d}/corpus.json"], "is an input"),
    "transcribe over the file it was given": (["transcribe", "--root", "{d}/notes.json", "--out", "{d}",
                                               "--cache", "{d}/cache"],
                                              "is an input"),
    "a link to the input": (["audio", "--manifest", "{d}/m.csv", "--out", "{d}/link.npz", *MEDIA], "is an input"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_output_is_an_input_or_a_users_file(case, folder, capsys):
    argv, words = CASES[case]
    (folder / "notes.json").write_text('{"mine": 1}\n')
    (folder / "corpus.json").write_text('{"demo": {"dialogues": 1}}\n')   # JSON is YAML: a params file
    if "features.npz" in " ".join(argv):
        np.savez(folder / "features.npz", **make_store())
    if "predictions.csv" in " ".join(argv):
        np.savez(folder / "predictions.csv.npz", **make_store())
        os.replace(folder / "predictions.csv.npz", folder / "predictions.csv")
    os.symlink(folder / "m.csv", folder / "link.npz")
    before = _snapshot(folder)
    argv = [a.replace("{d}", str(folder)).replace("{clip}", str(_clip(folder))) for a in argv]
    code, err = _cli(argv, capsys)
    assert code == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _snapshot(folder) == before   # nothing written, nothing replaced


def test_another_stages_output_is_not_written_over(folder, capsys):
    """align's --out naming the text stage's part: a file with another stage's record."""
    (folder / "text.pt").write_bytes(b"a part")
    (folder / "text.pt.meta.json").write_text(json.dumps({"stage": "text"}))
    code, err = _cli(["train", "--params", str(folder / "params.yaml"), "--store", str(folder / "store.npz"),
                      "--checkpoint", str(folder / "text.pt"), "--history", str(folder / "h.csv"),
                      "--summary", str(folder / "s.json")], capsys)
    assert code == 2 and "is the text stage's output" in err, err
    assert (folder / "text.pt").read_bytes() == b"a part"


def test_a_stage_run_again_writes_over_its_own_outputs(folder, tmp_path, capsys):
    out = tmp_path / "out" / "manifest.csv"
    for _ in range(2):
        code, err = _cli(["ingest", "--format", "demo", "--root", str(folder), "--out", str(out)], capsys)
        assert code == 0, err
    inside = folder / "again.csv"   # an output inside the input folder: its own output, run again
    for _ in range(2):
        code, err = _cli(["ingest", "--format", "demo", "--root", str(folder), "--out", str(inside)], capsys)
        assert code == 0, err


def _fake_transcripts(videos, *args, **kwargs):
    utterances = [{"start": 0.5, "end": 1.5, "speaker": "S1", "text": "hello there", "words": []},
                  {"start": 2.0, "end": 3.0, "speaker": "S2\n\n99\n00:00:09,000 --> 00:00:10,000\nX", "text": "hi",
                   "words": []}]
    info = {"utterances": utterances, "speakers": 2, "language": "en", "language_probability": 0.9,
            "overlaps": [], "seconds": 3.0, "model": "tiny.en"}
    return {str(v): Result(np.zeros((2, 4), np.float32), info) for v in videos}


def test_transcribe_keeps_a_hand_made_srt_and_writes_what_was_heard_beside_it(tiny_corpus, tmp_path, capsys,
                                                                              monkeypatch):
    """transcribe --root DIR --out DIR replaced the user's corrected talk.srt (predict kept it)."""
    import pipeline.stages.transcribe as stage
    from pipeline.subtitles import read_cues

    monkeypatch.setattr(stage, "transcribe", _fake_transcripts)
    shutil.copy(tiny_corpus[1]["media"][0], tmp_path / "talk.mp4")
    mine = "1\n00:00:00,500 --> 00:00:01,500\nAnn: hello there\n"
    (tmp_path / "talk.srt").write_text(mine)
    for _ in range(2):   # the second time over its own outputs
        code, err = _cli(["transcribe", "--root", str(tmp_path), "--out", str(tmp_path)], capsys)
        assert code == 0, err
    assert (tmp_path / "talk.srt").read_text() == mine
    heard, _ = read_cues(tmp_path / "talk.heard.srt")
    assert len(heard) == 2   # a line break in a name (a damaged cache entry) started a third cue
    assert "\nS2 99 00:00:09,000 -> 00:00:10,000 X: hi\n" in (tmp_path / "talk.heard.srt").read_text()
    assert (tmp_path / "talk.vtt").is_file() and json.loads((tmp_path / "talk.json").read_text())["speakers"] == 2


def test_transcribe_refuses_to_replace_a_users_json(tiny_corpus, tmp_path, capsys, monkeypatch):
    import pipeline.stages.transcribe as stage

    monkeypatch.setattr(stage, "transcribe", _fake_transcripts)
    shutil.copy(tiny_corpus[1]["media"][0], tmp_path / "talk.mp4")
    (tmp_path / "talk.json").write_text('{"my": "notes"}\n')
    code, err = _cli(["transcribe", "--root", str(tmp_path / "talk.mp4"), "--out", str(tmp_path)], capsys)
    assert code == 2 and "talk.json: exists and was not written by transcribe" in err, err
    assert (tmp_path / "talk.json").read_text() == '{"my": "notes"}\n'
