"""Inputs read wrong or dropped silently (issue 20): each is now a counted reason or an error
naming the file (and line)."""
import json
import re
import warnings

import numpy as np
import pytest

from extractors.audio import MIN_SAMPLES, AudioConfig, AudioExtractor
from extractors.media import SAMPLE_RATE, write_clip


@pytest.fixture
def noise_clip(tmp_path):
    path = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    write_clip(path, np.full((12, 32, 32, 3), 90, np.uint8), 12, rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32))
    return path


@pytest.mark.parametrize("feature_set", sorted(MIN_SAMPLES))
def test_min_samples_is_where_opensmile_starts_giving_finite_values(feature_set):
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                            feature_level=opensmile.FeatureLevel.Functionals)
    noise = np.random.default_rng(1).normal(0, 0.1, MIN_SAMPLES[feature_set]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # openSMILE warns "segment too short" below the minimum
        shorter = smile.process_signal(noise[:-16], SAMPLE_RATE).to_numpy()[0]
    assert np.isfinite(smile.process_signal(noise, SAMPLE_RATE).to_numpy()[0]).all()
    assert np.isnan(shorter).all()


def test_a_too_short_segment_is_a_counted_reason_not_zeros(noise_clip):
    extractor = AudioExtractor(AudioConfig(feature_set="eGeMAPSv02"))
    short = extractor.extract(noise_clip, 0.2, 0.25)
    assert short.vector is None and short.error == "too_short"
    assert short.message == f"{noise_clip}: segment of 50 ms is too short for eGeMAPSv02 (needs 60 ms)"
    enough = extractor.extract(noise_clip, 0.2, 0.26)
    assert enough.error is None and np.isfinite(enough.vector).all() and np.abs(enough.vector).sum() > 0


def test_non_finite_opensmile_output_is_a_counted_reason(noise_clip, monkeypatch):
    extractor = AudioExtractor(AudioConfig(feature_set="eGeMAPSv02"))
    real = extractor.smile.process_signal

    def one_nan(signal, rate):
        frame = real(signal, rate)
        frame.iloc[0, 3] = np.inf
        return frame

    monkeypatch.setattr(extractor.smile, "process_signal", one_nan)
    result = extractor.extract(noise_clip)
    assert result.vector is None and result.error == "non_finite" and "1 of 88 values" in result.message


# --- a clear one-line error naming the file, not a traceback ---

def test_a_malformed_lineage_record_names_its_file(tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.manifest import read_manifest

    manifest = tmp_path / "m.csv"
    manifest.write_text("dialogue_id\n")
    for text, message in [('{"labels": ["a"', "not a readable lineage record"), ("[1, 2]", "not a lineage record"),
                          ('{"stage": "ingest"}', "the lineage record has no ['labels']")]:
        (tmp_path / "m.csv.meta.json").write_text(text)
        with pytest.raises(PipelineError, match=re.escape(f"{tmp_path / 'm.csv.meta.json'}: {message}")):
            read_manifest(manifest)


def test_a_symlink_loop_is_named_by_probe_and_lineage(tmp_path):
    from extractors.media import MediaError, probe
    from pipeline.errors import PipelineError
    from pipeline.lineage import input_hash

    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    with pytest.raises(MediaError, match=re.escape(f"{loop}: is a symbolic link loop")):
        probe(loop)
    with pytest.raises(PipelineError, match=re.escape(f"{loop}: input is a symbolic link loop")):
        input_hash(loop)     # it hashed as an empty folder


@pytest.mark.parametrize("dialogues", ["0", "-3"])
def test_demo_with_no_dialogues_is_a_clear_error(tmp_path, capsys, dialogues):
    from pipeline.cli import main

    (tmp_path / "params.yaml").write_text("demo: {}\n")
    code = main(["demo", "--params", str(tmp_path / "params.yaml"), "--dialogues", dialogues, "--out", str(tmp_path / "d")])
    assert code == 2 and f"demo.dialogues: {dialogues} is out of range (must be >= 1)" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_text_on_one_dialogue_names_text_folds_before_any_fitting(tiny_corpus, tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.stages import text

    _, manifest = tiny_corpus
    assert manifest["dialogue_id"].nunique() == 1
    args = (manifest, manifest.attrs["labels"])
    paths = (tmp_path / "text.npz", tmp_path / "cnn.pt")
    with pytest.raises(PipelineError, match=r"m.csv: cross-fitting with text.folds: 5 needs at least 5 training "
                                            r"dialogues .* there is 1: it needs two at the least: add dialogues, or "
                                            r"set text.folds: 0"):
        text.build(*args, {}, *paths, inputs=["m.csv"])
    with pytest.raises(PipelineError, match=r"m.csv: no labelled valid utterance with words"):
        text.build(*args, {"folds": 0}, *paths, inputs=["m.csv"])


def _store(tmp_path, **edits):
    from pipeline.store import write_npz
    from test_model import make_store

    store = make_store(n_dialogues=3, turns=2)
    store.update(edits)
    return write_npz(tmp_path / "store.npz", store), store


@pytest.mark.parametrize("edit, message", [
    (lambda s: {"audio_present": s["audio_present"][:-1]}, r"audio_present has shape \(5,\), but the store has 6 rows"),
    (lambda s: {"text": s["text"][:4]}, r"the text matrix has shape \(4, \d+\), but the store has 6 rows"),
    (lambda s: {"label": np.where(np.arange(6) == 4, 3, s["label"])},
     r"row 4 has label index 3, but there are 3 classes \(0..2; -1: unlabelled\)"),
    (lambda s: {"label": np.full(6, -2)}, r"row 0 has label index -2"),
])
def test_a_store_with_a_mask_or_label_that_does_not_fit_names_the_store(tmp_path, edit, message):
    from pipeline.errors import PipelineError
    from pipeline.store import load_store

    _, store = _store(tmp_path)
    path, _ = _store(tmp_path, **edit(store))
    with pytest.raises(PipelineError, match=re.escape(str(path)) + ": " + message):
        load_store(path)


def _report_inputs(tmp_path, summary='{"selected_epoch": 1}', history="epoch,loss,valid_wf1,train_acc\n1,0.5,40,50\n"):
    store, _ = _store(tmp_path)
    (tmp_path / "eval").mkdir(exist_ok=True)
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(
        {"acc": 50.0, "wf1": 40.0, "support": 2, "split": "test", "per_class": {"c0": {"acc": 1, "f1": 1, "support": 2}}}))
    (tmp_path / "summary.json").write_text(summary)
    (tmp_path / "history.csv").write_text(history)
    return store


@pytest.mark.parametrize("summary, history, message", [
    ('{"selected_epoch": ', None, r"summary.json: not a readable training summary"),
    ("[]", None, r"summary.json: not a training summary \(a JSON object\), but a list"),
    (None, "epoch,loss\n1,0.5\n", r"history.csv: not a training history \(no \['valid_wf1', 'train_acc'\]\)"),
    (None, "epoch,loss,valid_wf1,train_acc\n1,0.5,40,50\n2,oops,41,52\n", r"history.csv: line 3: loss 'oops' is not a number"),
    (None, "", r"history.csv: not a readable training history"),
    ('{"epochs_run": "<script>alert(1)</script>"}', None, r"summary.json: epochs_run '<script>.*is not an epoch number"),
    ('{"selected_epoch": "3"}', None, r"summary.json: selected_epoch '3' is not an epoch number"),
    ('{"epochs_run": -3}', None, r"summary.json: epochs_run -3 is not an epoch number"),
])
def test_the_report_names_a_malformed_summary_or_history(tmp_path, summary, history, message):
    from pipeline.errors import PipelineError
    from pipeline.stages import report

    store = _report_inputs(tmp_path, **{k: v for k, v in (("summary", summary), ("history", history)) if v is not None})
    (tmp_path / "params.yaml").write_text("report: {}\n")
    with pytest.raises(PipelineError, match=message):
        report.run(store, tmp_path / "model.pt", tmp_path / "eval", tmp_path / "history.csv", tmp_path / "summary.json",
                   tmp_path / "features", tmp_path / "report.html", tmp_path / "params.yaml")


def test_an_output_file_without_a_suffix_is_a_file_not_a_folder(tiny_corpus, tmp_path, capsys):
    """ingest, align, text, train and import made a folder of a suffixless --out, then failed on it
    ("is a folder"), text and train only after all their work."""
    from pipeline.artifacts import check_writable
    from pipeline.cli import main
    from pipeline.errors import PipelineError

    root, _ = tiny_corpus
    assert main(["ingest", "--format", "demo", "--root", str(root), "--out", str(tmp_path / "out" / "manifest")]) == 0
    assert (tmp_path / "out" / "manifest").is_file()
    check_writable(tmp_path / "a" / "store", folders=[tmp_path / "cache"])
    assert not (tmp_path / "a" / "store").exists() and (tmp_path / "a").is_dir() and (tmp_path / "cache").is_dir()
    with pytest.raises(PipelineError, match="cache: is a folder; name a file to write"):
        check_writable(tmp_path / "cache")


def test_a_non_finite_row_marked_present_is_an_error_naming_its_file(tiny_corpus, tmp_path, capsys):
    """evaluate scored a store with NaN in a present row (every such row argmax'd to the first class,
    exit 0); align and import wrote such rows into a store that train then refused."""
    from pipeline.cli import main
    from pipeline.errors import PipelineError
    from pipeline.store import align, write_npz

    _, store = _store(tmp_path)
    audio = store["audio"].copy()
    audio[1, 0] = np.nan
    path, _ = _store(tmp_path, audio=audio)
    code = main(["evaluate", "--store", str(path), "--checkpoint", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}: 1 row(s) marked present hold non-finite audio values" in err, err
    _, manifest = tiny_corpus
    ids = manifest["utterance_id"].to_numpy()
    features = np.ones((len(ids), 4), np.float32)
    features[2] = np.inf
    feats = write_npz(tmp_path / "audio.npz", {"utterance_id": ids, "features": features,
                                               "present": np.ones(len(ids), bool), "missing_reason": np.full(len(ids), "")} | {"utterance_id": ids.astype(str)})
    with pytest.raises(PipelineError, match=re.escape(f"{feats}: 1 row(s) marked present hold non-finite audio")):
        align(manifest, ["neutral", "happy", "sad", "angry"], {"audio": feats}, tmp_path / "s.npz", tmp_path / "c.json")
