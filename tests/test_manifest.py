"""Manifest readers and validation: each problem is an error naming the file and the line."""
from pathlib import Path

import pandas as pd
import pytest

from pipeline.datasets import read_dataset
from pipeline.manifest import COLUMNS, ManifestError, load_manifest, read_generic, write_manifest

LABELS = ["neutral", "happy", "sad", "angry"]


@pytest.fixture
def user_folder(tiny_corpus, tmp_path):
    """A user's folder in the generic layout: clips plus a CSV (no dataset/turn/start/end columns)."""
    root, manifest = tiny_corpus
    rows = manifest[["split", "dialogue_id", "utterance_id", "speaker", "text", "label", "media"]].copy()
    rows["media"] = [str(root / m) for m in rows["media"]]
    return rows


def write(rows, tmp_path):
    path = tmp_path / "clips.csv"
    rows.to_csv(path, index=False)
    return path


def test_generic_reader_fills_defaults(user_folder, tmp_path):
    out = read_generic(write(user_folder, tmp_path), tmp_path, labels=LABELS, dataset="mine")
    assert list(out.columns) == COLUMNS
    assert list(out["turn"]) == [0, 1, 2] and set(out["dataset"]) == {"mine"}
    assert out["start"].isna().all() and out.attrs["labels"] == LABELS


def test_demo_reader_and_round_trip(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    manifest = read_dataset("demo", root)
    assert len(manifest) == 3 and manifest.attrs["labels"] == LABELS
    write_manifest(manifest, tmp_path / "m.csv")
    back = load_manifest(tmp_path / "m.csv")
    pd.testing.assert_frame_equal(back, manifest, check_dtype=False)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.assign(media=r["media"].where(r.index != 1, "gone.mp4")), r"line 3: media file .*gone.mp4.* not found"),
    (lambda r: r.assign(utterance_id=[r["utterance_id"][0]] * len(r)), r"line 3: duplicate utterance id .*first on line 2"),
    (lambda r: r.assign(split=["train", "dev", "test"]), r"line 3: unknown split 'dev'"),
    (lambda r: r.assign(dialogue_id=["d", "", "d"]), r"line 3: empty dialogue id"),
    (lambda r: r.assign(start=["0", "1.5", ""], end=["1", "1.0", ""]), r"line 3: start 1.5 is not before end 1.0"),
    (lambda r: r.assign(label=["happy", "happy", "bored"]), r"line 4: label 'bored' is not in the label set"),
    (lambda r: r.drop(columns=["speaker"]), r"missing column\(s\) \['speaker'\]"),
    (lambda r: r.assign(start=["soon", "", ""]), r"line 2: start 'soon' is not a number"),
])
def test_each_problem_names_file_and_line(user_folder, tmp_path, edit, message):
    path = write(edit(user_folder), tmp_path)
    with pytest.raises(ManifestError, match=message) as info:
        read_generic(path, tmp_path, labels=LABELS)
    assert str(path) in str(info.value)


def test_unknown_format_and_missing_csv(tmp_path):
    with pytest.raises(ManifestError, match="unknown dataset format 'youtube'"):
        read_dataset("youtube", tmp_path)
    with pytest.raises(ManifestError, match="not a demo corpus"):
        read_dataset("demo", tmp_path)
    with pytest.raises(ManifestError, match="manifest.csv: CSV not found"):
        read_dataset("generic", tmp_path)


def test_a_manifest_works_from_any_working_directory(tiny_corpus, tmp_path, monkeypatch):
    root, _ = tiny_corpus
    write_manifest(read_dataset("demo", root), tmp_path / "m.csv")
    monkeypatch.chdir(tmp_path.parent)          # a stage run from elsewhere still finds every clip
    back = load_manifest(tmp_path / "m.csv")
    assert all(Path(m).is_file() for m in back["media"])
