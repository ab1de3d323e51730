"""Validation before work (reliability round 2): every params value, user-given files read as
data only, no training on NaN, no metric under another model's class names."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from model.errors import ModelError
from pipeline.cli import main
from tests.test_model import make_store
from tests.test_structure import ROOT, TYPO_RUNS

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())
CHECKED = [s for s in TYPO_RUNS if s != "ingest"]   # ingest's keys are its reader's options


def wrong_kind(value):
    """A value of another kind than the shipped one (a YAML user's plausible slip)."""
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, (int, float)):
        return "many"
    if isinstance(value, (list, dict)):
        return 5
    return [1]   # a string or null given a list


def _run(section, params, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    argv = [a.format(tmp=tmp_path) for a in TYPO_RUNS[section]] + ["--params", str(tmp_path / "p.yaml")]
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("section", CHECKED)
def test_every_params_value_of_the_wrong_kind_is_one_clear_line(section, tmp_path, capsys):
    """Covers every key of every stage section in the shipped params.yaml (bool, int, float,
    string, list, mapping); before round 2 most ended in a TypeError deep in the stage."""
    for key, value in SHIPPED[section].items():
        params = {section: dict(SHIPPED[section], **{key: wrong_kind(value)})}
        code, err = _run(section, params, tmp_path, capsys)
        assert code == 2 and f"{section}.{key}" in err and "Traceback" not in err, (key, err)


@pytest.mark.parametrize("section, key, value, words", [
    ("train", "batch_size", 0, ">= 1"), ("model", "H", 0, ">= 1"), ("model", "dropout", 2, "< 1"),
    ("visual", "fps", 0, "> 0"), ("train", "device", "tpu", "not a device"), ("train", "patience", -1, ">= 0"),
    ("audio", "feature_set", "MFCC", "not one of"), ("visual", "backbone", "resnet", "not one of"),
    ("model", "mode", "transformer", "not one of"), ("text", "lr", 0, "> 0"), ("audio", "workers", 0, ">= 1"),
    ("demo", "dialogues", 0, ">= 1"), ("visual", "region", "top", "not one of"), ("model", "K", 100, "<= 64"),
    ("model", "L", 20, "<= 12"), ("model", "d", 1_000_000, "<= 4096"), ("text", "feature_maps", 10**6, "<= 4096"),
    ("text", "widths", [500], "wider than text.max_len"), ("audio", "scheduler", "tcp://127.0.0.1", "not a Dask"),
    ("visual", "scheduler", "bogus://x:1", "not a Dask"), ("model", "views", "XX", "bad view 'XX'"),
    ("audio", "scheduler", "inproc://x", "not a Dask"), ("audio", "scheduler", "tls://127.0.0.1:1", "not a Dask"),
])
def test_out_of_range_and_unknown_choices_name_the_key(section, key, value, words, tmp_path, capsys):
    code, err = _run(section, {section: {key: value}}, tmp_path, capsys)
    assert code == 2 and f"{section}.{key}" in err and words in err and "Traceback" not in err, err


def test_a_number_yaml_reads_as_a_string_is_the_number(tmp_path):
    from model.train import TrainConfig
    from pipeline.params import configs

    (tmp_path / "p.yaml").write_text("train:\n  lr: 1e-3\n")   # YAML 1.1: "1e-3" (no dot) is a string
    from pipeline.params import section
    assert configs("train", section("train", tmp_path / "p.yaml"), TrainConfig).lr == pytest.approx(1e-3)


def test_an_unknown_section_and_a_missing_params_file_are_errors(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("trian:\n  epochs: 3\n")
    assert main(["train", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "s.npz")]) == 2
    assert "unknown section(s) ['trian']" in capsys.readouterr().err
    assert main(["train", "--params", str(tmp_path / "none.yaml"), "--store", str(tmp_path / "s.npz")]) == 2
    assert "none.yaml: params file not found" in capsys.readouterr().err


class Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickled_word_vector_file_is_refused_without_running_it(tmp_path):
    from extractors.text import TextConfig, TextError, load_vectors

    payload, marker = Payload(), tmp_path / "ran"
    payload.marker = str(marker)
    (tmp_path / "vectors.kv").write_bytes(pickle.dumps(payload))
    with pytest.raises(TextError, match="pickles, which run code"):
        load_vectors(TextConfig(vectors=str(tmp_path / "vectors.kv")), [["a"]])
    assert not marker.exists()


def test_an_encoder_folder_with_pickled_weights_or_foreign_modules_is_refused(tmp_path):
    from extractors.base import ExtractorError
    from extractors.sentence import load_encoder

    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ExtractorError, match="pickled weights"):
        load_encoder(str(tmp_path / "enc"), "cpu")
    (tmp_path / "enc" / "pytorch_model.bin").unlink()
    (tmp_path / "enc" / "model.safetensors").write_bytes(b"{}")
    (tmp_path / "enc" / "modules.json").write_text(json.dumps([{"type": "os.system", "path": ""}]))
    with pytest.raises(ExtractorError, match="outside sentence-transformers"):
        load_encoder(str(tmp_path / "enc"), "cpu")


def _train(store, **train):
    from model.dimmn import ModelConfig
    from model.train import TrainConfig, train as fit

    return fit(store, ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=2, **train), progress=False)


def test_a_modality_no_training_row_has_is_an_error_not_nan():
    store = make_store()
    store["audio_present"][store["split"] == "train"] = False
    with pytest.raises(ModelError, match="no labelled training utterance has audio features"):
        _train(store)


def test_non_finite_features_are_an_error_before_training():
    store = make_store()
    store["visual"][-1, 3] = np.nan   # a test row: it would still poison evaluation
    with pytest.raises(ModelError, match="1 utterance\\(s\\) have non-finite visual features.*'u47'"):
        _train(store)


def test_a_non_finite_loss_stops_training_with_a_clear_message(tmp_path):
    with pytest.raises(ModelError, match="loss became (nan|inf).*train.lr"):
        _train(make_store(), lr=1e30, grad_clip=1e30)


def test_evaluate_refuses_a_store_whose_classes_are_in_another_order(tmp_path, capsys):
    store = make_store()
    np.savez(tmp_path / "store.npz", **store)
    (tmp_path / "p.yaml").write_text("model: {d: 16, K: 3, L: 2}\ntrain: {epochs: 1}\n")
    common = ["--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
              "--checkpoint", str(tmp_path / "m.pt")]
    assert main(["train", *common, "--history", str(tmp_path / "h.csv"), "--summary", str(tmp_path / "s.json")]) == 0
    np.savez(tmp_path / "store.npz", **dict(store, classes=store["classes"][::-1]))
    assert main(["evaluate", *common, "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "classes ['c2', 'c1', 'c0'] are not the model's ['c0', 'c1', 'c2']" in err
    store["audio"] = store["audio"][:, :5]
    np.savez(tmp_path / "store.npz", **store)
    assert main(["evaluate", *common, "--out", str(tmp_path / "eval")]) == 2
    assert "audio features are 5-d" in capsys.readouterr().err


def test_an_empty_checkpoint_or_a_resume_path_that_is_a_folder_is_one_clear_error(tmp_path):
    from model.train import load_blob

    (tmp_path / "m.pt").write_bytes(b"")
    with pytest.raises(ModelError, match="m.pt: not a model checkpoint"):   # was an IndexError in the handler
        load_blob(tmp_path / "m.pt", "model checkpoint")
    (tmp_path / "m.pt.last").mkdir()
    from model.dimmn import ModelConfig
    from model.train import TrainConfig, train as fit
    with pytest.raises(ModelError, match="m.pt.last: the resume checkpoint is not a file"):
        fit(make_store(), ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=1, resume=True), tmp_path / "m.pt",
            progress=False)
    with pytest.raises(ModelError, match="m.pt.last: cannot write the checkpoint"):   # named, not its temp file
        fit(make_store(), ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=1), tmp_path / "m.pt", progress=False)


def _generic_root(root: Path, dialogues: int = 4) -> Path:
    (root / "clips").mkdir(parents=True)
    lines = ["split,dialogue_id,utterance_id,turn,speaker,text,label,media"]
    for d in range(dialogues):
        for u in range(2):
            (root / "clips" / f"d{d}u{u}.mp4").write_bytes(b"")
            lines.append(f"train,d{d},d{d}u{u},{u},A,hello,happy,clips/d{d}u{u}.mp4")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("key, value, words", [
    ("holdout_share", "abc", "not a number"), ("holdout_share", 5, "< 1"), ("holdout_share", float("nan"), "not a number"),
    ("holdout_share", -1, ">= 0"), ("holdout_share", 0.99, "every training dialogue"),
    ("holdout_seed", -1, ">= 0"), ("holdout_seed", "x", "not an integer"),
])
def test_ingest_holdout_values_are_checked(key, value, words, tmp_path, capsys):
    """ingest's own keys (not its reader's options) were read with float()/int(): a traceback,
    or every training dialogue silently held out as valid."""
    root = _generic_root(tmp_path / "clips_root")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"ingest": {key: value}}))
    code = main(["ingest", "--params", str(tmp_path / "p.yaml"), "--format", "generic", "--root", str(root),
                 "--out", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err
    assert code == 2 and f"ingest.{key}" in err and words in err and "Traceback" not in err, err
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("modalities", [[], ["textt"], ["text", "text"]])
def test_model_modalities_must_be_known_and_distinct(modalities, tmp_path, capsys):
    """[] was an IndexError deep in the forward pass; a typo said the store had no modality at all."""
    np.savez(tmp_path / "store.npz", **make_store())
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"model": {"d": 16, "K": 3, "L": 2, "modalities": modalities,
                                                               "fusion": "concat"}, "train": {"epochs": 1}}))
    code = main(["train", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
                 "--checkpoint", str(tmp_path / "m.pt"), "--history", str(tmp_path / "h.csv"),
                 "--summary", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 2 and "model.modalities" in err and "Traceback" not in err, err


@pytest.mark.parametrize("device", ["cuda:99", "mps"])
def test_a_device_this_machine_lacks_is_a_clear_error(device):
    """A RuntimeError from torch's CUDA init before (no driver), after the store was loaded."""
    import torch

    from model.train import pick_device
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ModelError, match=f"train.device '{device}'"):
        pick_device(device)


@pytest.mark.parametrize("widths", [[], [0], ["a"], [-3, 4], [3.5]])
def test_text_widths_are_positive_integers(widths, tmp_path, capsys):
    """Each was a torch or Python traceback once the text stage had read the manifest."""
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"text": {"widths": widths}}))
    code = main(["text", "--params", str(tmp_path / "p.yaml"), "--manifest", str(tmp_path / "none.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "text.widths" in err and "Traceback" not in err, err


@pytest.mark.parametrize("values, words", [
    ({"cue_reliability": {"text": 2}}, "demo.cue_reliability"), ({"cue_reliability": {"txt": 0.5}}, "demo.cue_reliability"),
    ({"min_turns": 9, "max_turns": 3}, "demo.min_turns"), ({"width": 161}, "demo.width"),
    ({"height": 1000000}, "demo.height"),
])
def test_demo_settings_that_fit_together(values, words, tmp_path, capsys):
    """A KeyError or ValueError from a worker process, an OpenCV assertion (odd size), or an
    endless run (a million-pixel-wide frame) before."""
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"demo": values}))
    code = main(["demo", "--params", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "demo")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "demo").exists()


def test_a_region_map_with_an_unknown_side_names_visual_region():
    from extractors.visual import sides

    with pytest.raises(ValueError, match=r"visual.region: \{'\*': 'top'\} is not a side"):   # was "'top' is not a valid Region"
        sides({"Ses01*": "left", "*": "top"}, ["Ses01_F0"])


@pytest.mark.parametrize("values, words", [
    ({"fps": 100000}, "visual.fps"), ({"speaker": "active", "active_fps": 100000}, "visual.active_fps"),
    ({"backbone": "cnn3d", "clip_frames": 1, "clip_size": 1}, "visual.clip_frames"),
])
def test_visual_sampling_and_3d_clip_sizes_have_bounds(values, words, tmp_path, capsys):
    """fps 100000 ran past any timeout (each sampling time a repeated frame through the face
    detector); a 1-frame 1-pixel cnn3d clip was a torch error after the clips were read."""
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"visual": values}))
    code = main(["visual", "--params", str(tmp_path / "p.yaml"), "--manifest", str(tmp_path / "none.csv"),
                 "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err, err


def test_the_entry_point_pins_kernels_and_threads_unless_told_otherwise(monkeypatch):
    from pipeline import numerics

    for key in numerics.PINNED:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(numerics, "_has_avx2", lambda: True)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")   # the user's own value wins
    pinned = numerics.pin()
    assert pinned["ATEN_CPU_CAPABILITY"] == "avx2" and pinned["MKL_CBWR"] == "COMPATIBLE" and pinned["OPENBLAS_CORETYPE"] == "Haswell" and pinned["OMP_NUM_THREADS"] == "7"
    for key in numerics.PINNED:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DIMMN_NUMERICS", "native")
    assert all(numerics.pin()[key] is None for key in numerics.PINNED)


def test_every_lineage_record_says_which_numeric_settings_made_it(tmp_path):
    from pipeline.lineage import write_record

    path = write_record(tmp_path / "x.npz", "text", {})
    assert set(json.loads(path.read_text())["numerics"]) >= {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS"}


def test_report_refuses_a_store_the_model_cannot_read_and_takes_a_folder_as_out(tmp_path, capsys):
    """report had no class/dimension check (a store missing a modality was a KeyError, other
    dimensions a RuntimeError, reordered classes a page under the wrong names), and an --out
    without a suffix became a folder the page's rename then failed on, naming its temp file."""
    store = make_store()
    np.savez(tmp_path / "store.npz", **store)
    (tmp_path / "p.yaml").write_text("model: {d: 16, K: 3, L: 2}\ntrain: {epochs: 1}\n")
    common = ["--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
              "--checkpoint", str(tmp_path / "m.pt")]
    files = ["--history", str(tmp_path / "h.csv"), "--summary", str(tmp_path / "s.json")]
    assert main(["train", *common, *files]) == 0
    assert main(["evaluate", *common, "--out", str(tmp_path / "eval")]) == 0
    report = ["report", *common, *files, "--eval", str(tmp_path / "eval"), "--features", str(tmp_path / "none")]
    assert main(report + ["--out", str(tmp_path / "page")]) == 0
    assert (tmp_path / "page" / "index.html").is_file()
    capsys.readouterr()
    for name, changed, words in [
            ("reordered", dict(store, classes=store["classes"][::-1]), "are not the model's"),
            ("narrow", dict(store, audio=store["audio"][:, :5]), "audio features are 5-d"),
            ("no_audio", {k: v for k, v in store.items() if not k.startswith("audio")}, "has no audio features")]:
        np.savez(tmp_path / f"{name}.npz", **changed)
        argv = [a if a != str(tmp_path / "store.npz") else str(tmp_path / f"{name}.npz") for a in report]
        assert main(argv + ["--out", str(tmp_path / f"{name}.html")]) == 2
        err = capsys.readouterr().err
        assert words in err and f"{name}.npz" in err and "Traceback" not in err, err


def test_an_output_path_that_is_a_folder_is_named_not_its_temp_file(tmp_path):
    from pipeline.artifacts import atomic_write
    from pipeline.errors import PipelineError

    (tmp_path / "summary.json").mkdir()
    with pytest.raises(PipelineError, match="summary.json: is a folder"):
        atomic_write(tmp_path / "summary.json", lambda handle: handle.write(b"{}"))
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_broken_params_file_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("train: {epochs: 3\nmodel: {d: 4}\n")   # an unterminated flow mapping
    assert main(["train", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'p.yaml'}: not valid YAML") and "\n" not in err


@pytest.mark.parametrize("section, key", [("train", "cv_folds"), ("text", "folds"), ("audio", "folds"),
                                          ("visual", "folds")])
def test_one_fold_is_an_error_naming_the_key_not_a_silent_off(section, key, tmp_path, capsys):
    """Every key that means K folds: 1 used to mean "off" without a word; 0 is off, 2 or more folds."""
    code, err = _run(section, {section: {key: 1}}, tmp_path, capsys)
    assert code == 2 and f"{section}.{key}: 1 fold" in err and "use 0" in err and "2 or more" in err, err
    assert "Traceback" not in err
    from pipeline.params import check_range
    for fine in (0, 2):
        check_range(section, key, fine)


def test_nan_in_a_row_marked_absent_is_read_as_zeros_and_counted(tmp_path, capsys):
    """A store made elsewhere may mark a missing row with NaN. Its values are never used, but NaN
    times the zero mask is NaN, and training refused the store as damaged; now load_store reads such
    rows as zeros and says how many. A NaN in a present row is still an error."""
    from pipeline.store import load_store, write_npz

    store = make_store()
    store["audio_present"][[5, 6]] = False
    store["audio"][[5, 6]] = np.nan
    write_npz(tmp_path / "s.npz", store)
    loaded = load_store(tmp_path / "s.npz")
    assert "s.npz: 2 audio row(s) marked absent held non-finite values; read as zeros" in capsys.readouterr().out
    assert (loaded["audio"][[5, 6]] == 0).all() and np.isfinite(loaded["audio"]).all()
    _, history, _ = _train(loaded)
    assert all(np.isfinite(h["loss"]) for h in history)

    with pytest.raises(ModelError, match=r"2 utterance\(s\) marked absent hold non-finite audio values .*'u5'.*must "
                                         r"hold zeros"):
        _train(store)   # built in code, never loaded: said as it is
    store["audio_present"][5] = True
    with pytest.raises(ModelError, match=r"1 utterance\(s\) have non-finite audio features .*'u5'.* marked present"):
        _train(store)


@pytest.mark.parametrize("flags, words", [(["--scheduler", "foo"], "--scheduler (as audio.scheduler)"),
                                          (["--workers", "0"], "--workers (as audio.workers)")])
def test_command_line_values_are_checked_as_the_params_are(flags, words, tmp_path, capsys):
    """--scheduler foo was a ValueError from inside distributed.Client; --workers 0 ran on 1 worker."""
    code = main(["audio", "--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "a.npz"),
                 "--model", str(tmp_path / "a.pt"), "--cache", str(tmp_path / "c"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err, err


def test_a_key_written_twice_in_a_params_file_is_an_error(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("train:\n  epochs: 3\n  epochs: 40\n")   # YAML keeps the last, silently
    assert main(["train", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "s.npz")]) == 2
    assert "key 'epochs' is written twice" in capsys.readouterr().err


def test_running_out_of_memory_is_one_line_naming_the_sizes(monkeypatch, tmp_path, capsys):
    from pipeline.stages import train

    def exhausted(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 4000000000000 bytes")

    monkeypatch.setattr(train, "run", exhausted)
    assert main(["train", "--store", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train: out of memory") and "model.d" in err and "Traceback" not in err
    monkeypatch.setattr(train, "run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug of ours")))
    with pytest.raises(RuntimeError, match="a bug of ours"):   # any other RuntimeError stays a traceback
        main(["train", "--store", str(tmp_path / "s.npz")])


def test_text_sizes_that_fit_alone_but_not_together_are_an_error(tmp_path, capsys):
    """embedding_dim, feature_maps and out_dim 4096 with widths [50]: each within its range, together
    840 million convolution weights, 6 GB in 45 s and no end."""
    params = {"text": {"embedding_dim": 4096, "feature_maps": 4096, "out_dim": 4096, "widths": [50]}}
    code, err = _run("text", params, tmp_path, capsys)
    assert code == 2 and "convolution weights; at most 50,000,000" in err and "Traceback" not in err, err


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    """evaluate scored a DIMMN checkpoint holding NaN (exit 0), and predict labelled every turn with
    the first class."""
    import torch

    from model.train import TrainConfig, load_checkpoint, train
    from model.dimmn import ModelConfig

    store = make_store()
    train(store, ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=1), checkpoint=tmp_path / "m.pt", progress=False)
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    name = next(k for k, v in blob["model"].items() if v.is_floating_point())
    blob["model"][name].view(-1)[0] = float("nan")
    torch.save(blob, tmp_path / "m.pt")
    with pytest.raises(ModelError, match=r"m.pt: damaged checkpoint: non-finite values in \['" + name):
        load_checkpoint(tmp_path / "m.pt")
