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
    (lambda r: r.assign(split=["train", "holdout", "test"]), r"line 3: unknown split 'holdout'.*dev and validation"),
    (lambda r: r.assign(dialogue_id=["d", "", "d"]), r"line 3: empty dialogue id"),
    (lambda r: r.assign(start=["0", "1.5", ""], end=["1", "1.0", ""]), r"line 3: start 1.5 is not before end 1.0"),
    (lambda r: r.assign(label=["happy", "happy", "bored"]), r"line 4: label 'bored' is not in the label set"),
    (lambda r: r.drop(columns=["speaker"]), r"missing column\(s\) \['speaker'\]"),
    (lambda r: r.assign(start=["soon", "", ""]), r"line 2: start 'soon' is not a number"),
    # once two classes, 'Neutral' and 'neutral' (without a label set given)
    (lambda r: r.assign(label=["neutral", "Neutral", "sad"]), r"line 3: label 'Neutral' differs from 'neutral' only in case"),
    (lambda r: r.assign(turn=[0, 1, 1]), r"line 4: turn 1 of dialogue .* is given twice \(first on line 3\)"),
])
def test_each_problem_names_file_and_line(user_folder, tmp_path, edit, message):
    path = write(edit(user_folder), tmp_path)
    with pytest.raises(ManifestError, match=message) as info:
        read_generic(path, tmp_path, labels=None if "case" in message else LABELS)
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


# --- inputs read wrong, silently (issue 20) ---

def write_bytes(rows, tmp_path, edit):
    """The CSV's bytes with ``edit(bytes) -> bytes`` applied."""
    path = tmp_path / "clips.csv"
    path.write_bytes(edit(rows.to_csv(index=False).encode("utf-8")))
    return path


def with_text(rows, **texts):
    """rows with the text of the utterance at each position replaced."""
    rows = rows.copy()
    for position, text in texts.items():
        rows.loc[int(position[1:]), "text"] = text
    return rows


def test_utf8_with_or_without_bom_is_utf8(user_folder, tmp_path):
    rows = with_text(user_folder, r0="caf\u00e9 \u2019 \u00c9lodie")
    for bom in (b"", b"\xef\xbb\xbf"):
        out = read_generic(write_bytes(rows, tmp_path, lambda raw: bom + raw), tmp_path, labels=LABELS)
        assert out["text"][0] == "caf\u00e9 ' \u00c9lodie" and list(out.columns) == COLUMNS


def test_one_invalid_byte_in_utf8_text_is_an_error_naming_line_and_offset(user_folder, tmp_path):
    rows = with_text(user_folder, r0="caf\u00e9", r1="na\u00efve")
    path = write_bytes(rows, tmp_path, lambda raw: raw.replace("na\u00efve".encode(), b"na\xefve"))
    offset = path.read_bytes().index(b"\xefve")
    with pytest.raises(ManifestError, match=rf"clips.csv: line 3: byte 0xef at offset {offset} is not UTF-8"):
        read_generic(path, tmp_path, labels=LABELS)


def test_windows_1252_text_is_read_and_an_undefined_byte_named(user_folder, tmp_path):
    rows = with_text(user_folder, r1="it\u2019s caf\u00e9")
    path = write_bytes(rows, tmp_path, lambda raw: raw.decode().encode("cp1252"))
    assert read_generic(path, tmp_path, labels=LABELS)["text"][1] == "it's caf\u00e9"
    path = write_bytes(rows, tmp_path, lambda raw: raw.decode().encode("cp1252").replace(b"\x92", b"\x81"))
    with pytest.raises(ManifestError, match=r"clips.csv: line 3: byte 0x81 at offset \d+ is neither UTF-8 nor "
                                            r"Windows-1252"):
        read_generic(path, tmp_path, labels=LABELS)


def test_a_nul_byte_is_an_error_naming_file_and_line(user_folder, tmp_path):
    path = write_bytes(with_text(user_folder, r2="cut here"), tmp_path, lambda raw: raw.replace(b"cut", b"c\0ut"))
    with pytest.raises(ManifestError, match=r"clips.csv: line 4: byte 0x00 at offset \d+ is a NUL"):
        read_generic(path, tmp_path, labels=LABELS)


@pytest.mark.parametrize("column, value", [("end", "nan"), ("end", "NaN"), ("end", "NAN"), ("end", "none"),
                                           ("end", "null"), ("start", "nan")])
def test_a_textual_nan_time_is_an_error_only_empty_means_the_whole_clip(user_folder, tmp_path, column, value):
    rows = user_folder.assign(start=["", "0.5", ""], end=["", "", "1.0"])
    rows.loc[1, column] = value
    with pytest.raises(ManifestError, match=rf"clips.csv: line 3: {column} '{value}' is not a number; leave the "
                                            r"cell empty for the whole clip"):
        read_generic(write(rows, tmp_path), tmp_path, labels=LABELS)


@pytest.mark.parametrize("start, end, message", [
    ("", "0", r"line 3: start 0 \(empty: the clip's start\) is not before end 0.0"),
    ("", "-1", r"line 3: start 0 \(empty: the clip's start\) is not before end -1.0"),
    ("-0.5", "", r"line 3: start -0.5 is negative"),
    ("2", "2", r"line 3: start 2.0 is not before end 2.0"),
])
def test_a_segment_must_end_after_it_starts_at_zero_or_later(user_folder, tmp_path, start, end, message):
    rows = user_folder.assign(start=["", start, ""], end=["", end, ""])
    with pytest.raises(ManifestError, match=message):
        read_generic(write(rows, tmp_path), tmp_path, labels=LABELS)


def test_cells_are_stripped_of_surrounding_whitespace(user_folder, tmp_path):
    rows = user_folder.assign(label=[" neutral", "happy ", " sad "], speaker=[" A", "B ", "A"],
                              split=[" train", "train ", "test"], dialogue_id=[" d1", "d1 ", "d1"])
    out = read_generic(write(rows, tmp_path), tmp_path)
    assert out.attrs["labels"] == ["happy", "neutral", "sad"] and list(out["label"]) == ["neutral", "happy", "sad"]
    assert set(out["speaker"]) == {"A", "B"} and set(out["dialogue_id"]) == {"d1"}
    assert list(out["split"]) == ["train", "train", "test"]


@pytest.mark.parametrize("row", [1, 2])
def test_a_row_with_more_cells_than_the_header_names_file_and_line(user_folder, tmp_path, row):
    path = write(user_folder, tmp_path)
    lines = path.read_text().splitlines()
    lines[row] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=rf"clips.csv: line {row + 1}: 8 cells but the header has 7"):
        read_generic(path, tmp_path, labels=LABELS)


def test_a_symlink_loop_as_media_is_named_as_such(user_folder, tmp_path):
    (tmp_path / "loop.mp4").symlink_to(tmp_path / "loop.mp4")
    rows = user_folder.assign(media=[user_folder["media"][0], str(tmp_path / "loop.mp4"), user_folder["media"][2]])
    with pytest.raises(ManifestError, match=r"line 3: media file '.*loop.mp4' is a symbolic link loop"):
        read_generic(write(rows, tmp_path), tmp_path, labels=LABELS)


def test_dev_and_validation_read_as_valid_and_other_split_names_are_refused(user_folder, tmp_path, capsys):
    """MELD calls its valid split dev: a manifest, a store and evaluate --split read it as valid. Any
    other name is an error naming the file and the names found; before, a store's dev rows were in
    no split (trained and evaluated on by nobody) without a word."""
    import numpy as np

    from pipeline.cli import main
    from pipeline.errors import PipelineError
    from pipeline.store import load_store, write_npz
    from tests.test_model import make_store

    out = read_generic(write(user_folder.assign(split=["train", "dev", " Validation"]), tmp_path), tmp_path,
                       labels=LABELS)
    assert list(out["split"]) == ["train", "valid", "valid"]
    with pytest.raises(ManifestError, match=r"unknown split 'eval' \(unknown in this file: \['eval', 'holdout'\]\)"):
        read_generic(write(user_folder.assign(split=["eval", "holdout", "test"]), tmp_path), tmp_path, labels=LABELS)

    store = make_store()
    store["split"] = np.where(store["split"] == "valid", "dev", store["split"])
    write_npz(tmp_path / "dev.npz", store)
    loaded = load_store(tmp_path / "dev.npz")
    assert (loaded["split"] == "valid").sum() == (store["split"] == "dev").sum() > 0
    store["split"] = np.where(store["split"] == "dev", "holdout", store["split"])
    write_npz(tmp_path / "holdout.npz", store)
    with pytest.raises(PipelineError, match=r"holdout.npz: split holds unknown name\(s\) \['holdout'\] \(8 rows\)"):
        load_store(tmp_path / "holdout.npz")

    code = main(["evaluate", "--store", str(tmp_path / "dev.npz"), "--checkpoint", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "eval"), "--split", "holdout"])
    assert code == 2 and "evaluate --split: unknown split 'holdout'" in capsys.readouterr().err
    from pipeline.params import check_value
    from pipeline.stages.evaluate import EvaluateConfig
    assert check_value(EvaluateConfig, "evaluate", "split", "dev") == "dev"
