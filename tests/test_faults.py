"""Fault injection (issue 11): code hidden in a run folder, kills mid-write, foreign resume,
uneven DDP shards, and bad input that must give a one-line error naming the file, exit 2."""
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.base import ExtractorError
from extractors.media import MediaError
from extractors.reduce import Reducer
from extractors.text import has_words, tokenize
from model.dimmn import ModelConfig
from model.errors import ModelError
from model.train import TrainConfig, load_checkpoint, train
from pipeline.cache import FeatureCache, extract_utterances
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.parts import load_part
from pipeline.stages.predict import read_conversation
from test_model import make_store

ROOT = Path(__file__).resolve().parents[1]
SMALL = ModelConfig(d=16, K=3, L=2)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["audio.pt", "dimmn.pt"])
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_run_folder_with_code_in_it_is_refused_not_run(tmp_path, name, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    blob = {"kind": "reducer", "state": Payload(marker), "model": Payload(marker)}
    if writer == "torch":
        torch.save(blob, path)
    else:
        path.write_bytes(pickle.dumps(blob))
    loader, error = (load_part, PipelineError) if name == "audio.pt" else (load_checkpoint, ModelError)
    with pytest.raises(error, match=name):
        loader(path)
    assert not marker.exists()


KILLER = """
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
from test_model import make_store
from model.dimmn import ModelConfig
from model.train import TrainConfig, train
if sys.argv[2] == "kill":   # die in the middle of writing the next checkpoint
    def torn(obj, handle, *args, **kwargs):
        handle.write(b"PK\\x03\\x04 half a checkpoint")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = torn
train(make_store(), ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=int(sys.argv[3]), patience=10, seed=3,
      resume=True), checkpoint=sys.argv[1], progress=False)
"""


def test_a_kill_while_writing_the_checkpoint_keeps_the_last_good_one(tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(tests=str(ROOT / "tests")))
    ckpt = str(tmp_path / "m.pt")

    def go(mode, epochs):
        return subprocess.run([sys.executable, str(script), ckpt, mode, str(epochs)], capture_output=True, text=True,
                              timeout=300)

    assert go("ok", 2).returncode == 0
    killed = go("kill", 4)
    assert killed.returncode == -signal.SIGKILL
    state = torch.load(ckpt + ".last", weights_only=True)      # still whole: the epoch before the kill
    assert state["epoch"] == 1
    assert go("ok", 4).returncode == 0                          # resumes from it
    _, whole, _ = train(make_store(), SMALL, TrainConfig(epochs=4, patience=10, seed=3), progress=False)
    resumed = torch.load(ckpt + ".last", weights_only=True)["history"]
    assert [round(h["loss"], 5) for h in resumed] == [round(h["loss"], 5) for h in whole]


def test_resume_refuses_another_store_and_a_finished_run_stays_finished(tmp_path):
    store, ckpt = make_store(), tmp_path / "m.pt"
    train(store, SMALL, TrainConfig(epochs=2, seed=1), checkpoint=ckpt, progress=False)
    shuffled = dict(store, label=np.random.default_rng(5).permutation(store["label"]))
    with pytest.raises(ModelError, match="m.pt.last: this resume checkpoint was made with another store"):
        train(shuffled, SMALL, TrainConfig(epochs=4, seed=1, resume=True), checkpoint=ckpt, progress=False)
    with pytest.raises(ModelError, match="another store or other settings"):
        train(store, SMALL, TrainConfig(epochs=4, seed=1, lr=0.01, resume=True), checkpoint=ckpt, progress=False)
    done = tmp_path / "done.pt"
    _, first, _ = train(store, SMALL, TrainConfig(epochs=40, patience=1, seed=1), checkpoint=done, progress=False)
    assert len(first) < 40                                      # stopped early
    _, again, _ = train(store, SMALL, TrainConfig(epochs=40, patience=1, seed=1, resume=True), checkpoint=done,
                        progress=False)
    assert again == first                                       # nothing more for a finished run


def test_a_resume_checkpoint_holds_every_rng_and_loads_as_data(tmp_path):
    train(make_store(), SMALL, TrainConfig(epochs=1), checkpoint=tmp_path / "m.pt", progress=False)
    state = torch.load(tmp_path / "m.pt.last", weights_only=True, map_location="cpu")
    assert {"torch", "shuffle", "cuda", "numpy"} <= set(state["rng"]) and len(state["fingerprint"]) == 64


def test_an_empty_validation_set_is_an_error_not_an_epoch_0_model():
    store = make_store(n_dialogues=3)
    store["split"][:] = np.where(store["split"] == "valid", "test", store["split"])
    store["split"][store["dialogue_id"] == "d1"] = "test"     # one training dialogue: nothing to hold out
    with pytest.raises(ModelError, match="no labelled utterance to validate on"):
        train(store, SMALL, TrainConfig(epochs=1), progress=False)


def _torchrun(tmp_path, store, params, port):
    np.savez(tmp_path / "store.npz", **store)
    (tmp_path / "params.yaml").write_text(params)
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), "-m", "pipeline", "train",
         "--params", str(tmp_path / "params.yaml"), "--store", str(tmp_path / "store.npz"),
         "--checkpoint", str(tmp_path / "m.pt"), "--history", str(tmp_path / "h.csv"),
         "--summary", str(tmp_path / "s.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_ddp_on_uneven_shards_and_one_memory_hop_finishes(tmp_path):
    store = make_store(n_dialogues=9)                           # 7 training dialogues on 2 ranks
    done = _torchrun(tmp_path, store, "model: {d: 16, K: 3, L: 2, R: 1}\ntrain: {epochs: 2, batch_size: 1}\n", 29531)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"ddp_params_identical": true' in (tmp_path / "s.json").read_text()


def test_a_segment_past_the_clip_end_is_out_of_range(tiny_corpus):
    from extractors.media import load_audio, load_frames

    _, manifest = tiny_corpus
    for load in (load_audio, load_frames):
        with pytest.raises(MediaError, match="past the end") as caught:
            load(manifest["media"][0], start=60.0, end=61.0)
        assert caught.value.reason == "out_of_range"


def test_predict_gives_two_segments_of_one_clip_two_ids(tiny_corpus, tmp_path):
    root, manifest = tiny_corpus
    clip = Path(manifest["media"][0])
    (tmp_path / clip.name).write_bytes(clip.read_bytes())
    (tmp_path / "turns.csv").write_text(f"turn,speaker,text,media,start,end\n0,A,hi,{clip.name},0,0.4\n"
                                        f"1,B,yo,{clip.name},0.4,0.8\n")
    ids = read_conversation(tmp_path, tmp_path / "turns.csv")["utterance_id"]
    assert ids.nunique() == 2


def test_fewer_training_clips_than_dim_is_an_error():
    x = np.random.default_rng(0).normal(size=(12, 300)).astype(np.float32)
    with pytest.raises(ExtractorError, match="needs more than 100 training clips.*there are 12.*lower `dim`"):
        Reducer("pca", 100).fit(x)
    assert Reducer("pca", 10).fit(x).transform(x).shape == (12, 10)
    assert Reducer("pca", 100).fit(np.tile(x[:, :8], (20, 1))).out_dim == 8   # fewer columns: all kept


def test_a_corrupt_cache_entry_is_extracted_again(tiny_corpus, tmp_path):
    from test_cache import Counting

    _, manifest = tiny_corpus
    extract_utterances(manifest, Counting, "count", {}, tmp_path, progress=False)
    entry = next(tmp_path.rglob("*.npz"))
    entry.write_bytes(b"not a zip")
    results, counts = extract_utterances(manifest, Counting, "count", {}, tmp_path, progress=False)
    assert counts["repaired"] == 1 and all(r.vector is not None for r in results.values())
    assert FeatureCache(tmp_path).get(entry.stem) is not None


def test_text_in_any_script_is_words():
    assert tokenize("Größe ist café!") == ["größe", "ist", "café", "!"]
    assert tokenize("こんにちは 世界") == ["こんにちは", "世界"]
    assert not has_words("...") and has_words("ok...")


def clips_of(tiny_corpus):
    return [Path(m).name for m in tiny_corpus[1]["media"]]


def _generic(tmp_path, tiny_corpus, text: str, encoding="utf-8"):
    """A user's folder: the tiny corpus's clips and a manifest.csv of ``text``."""
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    for m in tiny_corpus[1]["media"]:
        (folder / Path(m).name).write_bytes(Path(m).read_bytes())
    (folder / "manifest.csv").write_bytes(text.encode(encoding))
    return folder


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_a_windows_1252_csv_is_read(tiny_corpus, tmp_path, capsys):
    header = "split,dialogue_id,utterance_id,speaker,text,label,media\n"
    folder = _generic(tmp_path, tiny_corpus, header + "".join(
        f"train,d,u{i},A,café olé {i},happy,{c}\n" for i, c in enumerate(clips_of(tiny_corpus))), "cp1252")
    code, err = _cli(["ingest", "--format", "generic", "--root", str(folder), "--out", str(tmp_path / "m.csv")], capsys)
    assert code == 0, err
    assert "café olé 0" in (tmp_path / "m.csv").read_text()


BAD_CSVS = {
    "empty": ("", "the CSV is empty"),
    "header only": ("split,dialogue_id,utterance_id,speaker,text,label,media\n", "no utterances"),
    "no training split": ("split,dialogue_id,utterance_id,speaker,text,label,media\ntest,d,u0,A,hi,happy,{clip}\n",
                          "no labelled utterance in the train split"),
    "end=inf": ("split,dialogue_id,utterance_id,speaker,text,label,media,start,end\n"
                "train,d,u0,A,hi,happy,{clip},0,inf\n", "line 2: end 'inf' is not a finite time"),
    "turn twice": ("split,dialogue_id,utterance_id,speaker,text,label,media,turn\n"
                   "train,d,u0,A,hi,happy,{clip},0\ntrain,d,u1,B,yo,sad,{clip},0\n",
                   "line 3: turn 0 of dialogue 'd' is given twice (first on line 2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_generic_csvs_are_one_line_errors(case, tiny_corpus, tmp_path, capsys):
    text, message = BAD_CSVS[case]
    folder = _generic(tmp_path, tiny_corpus, text.format(clip=clips_of(tiny_corpus)[0]))
    code, err = _cli(["ingest", "--format", "generic", "--root", str(folder), "--labels", "happy", "sad",
                      "--out", str(tmp_path / "m.csv")], capsys)
    assert code == 2 and message in err and ("manifest.csv" in err or "mine" in err), err


def test_import_of_a_ragged_pickle_or_a_partial_mosi_folder(tmp_path, capsys):
    ragged = ({"d": ["u0", "u1"]}, {"d": ["A"]}, {"d": [0, 1]}, {"d": [np.zeros(3)]}, {}, {}, {}, ["d"], [])
    (tmp_path / "ragged.pkl").write_bytes(pickle.dumps(ragged))
    code, err = _cli(["import", "--format", "pickle", "--src", str(tmp_path / "ragged.pkl"),
                      "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 2 and "ragged.pkl" in err and "dialogue 'd'" in err, err
    # a NaN vector was read as an absent one (this layout's absent is all zeros), exit 0
    damaged = ({"d": ["u0", "u1"]}, {"d": ["A", "B"]}, {"d": [0, 1]}, {"d": [np.array([1., np.nan, 0.]), np.ones(3)]},
               {}, {}, {}, ["d"], [])
    (tmp_path / "nan.pkl").write_bytes(pickle.dumps(damaged))
    code, err = _cli(["import", "--format", "pickle", "--src", str(tmp_path / "nan.pkl"),
                      "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 2 and "nan.pkl: 1 videoText vector(s) hold non-finite values (e.g. utterance 'u0')" in err, err
    (tmp_path / "mosi").mkdir()
    code, err = _cli(["import", "--format", "mosi", "--src", str(tmp_path / "mosi"), "--out", str(tmp_path / "m.npz")],
                     capsys)
    assert code == 2 and "transcripts.csv" in err, err


def test_predict_input_problems_are_one_line_errors(tiny_corpus, tmp_path, capsys):
    clip = clips_of(tiny_corpus)[0]
    folder = _generic(tmp_path, tiny_corpus, "")
    run = tmp_path / "run"
    run.mkdir()
    cases = [("turn,speaker,text,media\n", str(run), "no utterances"),
             (f"turn,speaker,text,media\nfirst,A,hi,{clip}\n", str(run), "turn 'first' is not an integer"),
             (f"turn,speaker,text,media\n0,A,hi,{clip}\n", str(tmp_path / "nowhere"), "run folder not found"),
             (f"turn,speaker,text,media\n0,A,hi,{clip}\n", str(run), "dimmn.pt: model checkpoint not found"),
             # two dialogues were merged into one conversation, each reading the other as context
             (f"dialogue_id,turn,speaker,text,media\nd1,0,A,hi,{clip}\nd2,0,B,yo,{clip}\n", str(run),
              "holds 2 dialogues; predict reads one conversation per CSV"),
             (f"turn,speaker,text,media\n0,A,hi,{clip}\n0,B,yo,{clips_of(tiny_corpus)[1]}\n", str(run),
              "turn 0 of dialogue"),
             (f"turn,speaker,text,media\n0,A,hi,{clip}\n", str(run), "is an input of this command")]   # --out is the CSV
    for text, run_dir, message in cases:
        (folder / "turns.csv").write_text(text)
        out = folder / "turns.csv" if "input of this" in message else tmp_path / "new" / "p.csv"
        code, err = _cli(["predict", "--run", run_dir, "--clips", str(folder), "--csv", str(folder / "turns.csv"),
                          "--out", str(out)], capsys)
        assert code == 2 and message in err, (message, err)
    assert (folder / "turns.csv").read_text().startswith("turn,speaker")   # the input is untouched


def test_an_output_folder_that_cannot_be_made_fails_before_the_work(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    np.savez(tmp_path / "store.npz", **make_store())
    (tmp_path / "p.yaml").write_text("{}\n")
    code, err = _cli(["train", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
                      "--checkpoint", str(tmp_path / "file" / "m.pt")], capsys)
    assert code == 2 and "cannot create the output folder" in err and "file" in err
    assert not list(tmp_path.rglob("*.last"))


def test_train_creates_a_missing_checkpoint_folder(tmp_path, capsys):
    np.savez(tmp_path / "store.npz", **make_store())
    (tmp_path / "p.yaml").write_text("model: {d: 16, K: 3, L: 2}\ntrain: {epochs: 1}\n")
    code, err = _cli(["train", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
                      "--checkpoint", str(tmp_path / "A" / "m.pt"), "--history", str(tmp_path / "h.csv"),
                      "--summary", str(tmp_path / "s.json")], capsys)
    assert code == 0 and (tmp_path / "A" / "m.pt").is_file(), err


def test_no_rows_to_validate_on_says_which_is_missing_and_how_to_fix_it(tmp_path):
    """The message used to say "the store has no valid split and fewer than 2 training dialogues"
    whatever was missing: a valid split of unlabelled rows, or held-out dialogues without labels."""
    store = make_store(n_dialogues=4)
    store["label"][store["split"] == "valid"] = -1   # a valid split, all unlabelled
    with pytest.raises(ModelError, match=r"the valid split has 8 utterance\(s\) and none is labelled .*label some"):
        train(store, SMALL, TrainConfig(epochs=1), progress=False)

    store = make_store(n_dialogues=3)
    store["split"][:] = np.where(store["split"] == "valid", "test", store["split"])
    store["split"][store["dialogue_id"] == "d1"] = "test"     # one training dialogue: nothing to hold out
    with pytest.raises(ModelError, match=r"no valid split, and 1 training dialogue\(s\) are too few to hold one out"):
        train(store, SMALL, TrainConfig(epochs=1), progress=False)

    store = make_store(n_dialogues=4)
    store["split"][store["split"] == "valid"] = "test"
    store["label"][store["dialogue_id"] != "d0"] = -1   # whichever dialogue is held out: no label in it
    store["label"][store["dialogue_id"] == "d0"] = 0
    store["split"][store["dialogue_id"] == "d0"] = "train"
    with pytest.raises(ModelError, match=r"held out as one \(\['d[123]'\]\) have no labelled utterance: give labelled "
                                         r"dialogues the split valid, or change train.seed or train.valid_share"):
        train(store, SMALL, TrainConfig(epochs=1, seed=0), progress=False)


@pytest.mark.parametrize("valid_rows, words", [({"text": ""}, r"the valid split's 2 labelled utterance\(s\) all "
                                                              r"lack words: give some of them words"),
                                               ({"label": ""}, r"the valid split has 2 utterance\(s\) and none is "
                                                               r"labelled")])
def test_text_says_what_its_valid_rows_lack(valid_rows, words, tmp_path):
    import pandas as pd

    from pipeline.errors import PipelineError
    from pipeline.stages import text

    manifest = pd.DataFrame({"utterance_id": [f"u{i}" for i in range(6)], "dialogue_id": list("aaaabb"),
                             "turn": [0, 1, 2, 3, 0, 1], "speaker": "s", "text": "some words here",
                             "label": ["x", "y"] * 3, "split": ["train"] * 4 + ["valid"] * 2})
    for column, value in valid_rows.items():
        manifest.loc[manifest["split"] == "valid", column] = value
    with pytest.raises(PipelineError, match=r"m.csv: no labelled valid utterance with words.*: " + words):
        text.build(manifest, ["x", "y"], {"folds": 0}, tmp_path / "t.npz", tmp_path / "t.pt", inputs=["m.csv"])


RANK0_DISK_FULL = '''
import os, sys
sys.path.insert(0, os.getcwd())
from pipeline.numerics import pin
pin()
import model.train as train
if os.environ.get("RANK") == "0":   # rank 0's disk fills when it writes the resume state
    def full(blob, path):
        raise OSError(28, "No space left on device", str(path))
    train.save_atomic = full
from pipeline.cli import main
sys.exit(main())
'''

RANK1_LATE = '''
import os, sys, time
sys.path.insert(0, os.getcwd())
if os.environ.get("RANK") == "1":
    time.sleep(3)
from pipeline.cli import main
sys.exit(main())
'''


def test_under_torchrun_a_failing_rank_stops_every_rank_with_one_line(tmp_path):
    """Rank 0 failed alone (a full disk writing m.pt.last) and rank 1 printed a gloo traceback
    (Connection closed by peer), or nothing when torchrun killed it first. Now each rank prints one
    line: rank 0 its error, rank 1 that rank 0 failed. A bad store stops every rank before any
    process group is made."""
    np.savez(tmp_path / "store.npz", **make_store(n_dialogues=9))
    (tmp_path / "params.yaml").write_text("model: {d: 16, K: 3, L: 2, R: 1}\ntrain: {epochs: 3, batch_size: 1}\n")
    (tmp_path / "run.py").write_text(RANK0_DISK_FULL)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    outputs = ["--checkpoint", str(tmp_path / "m.pt"), "--history", str(tmp_path / "h.csv"),
               "--summary", str(tmp_path / "s.json"), "--params", str(tmp_path / "params.yaml")]
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29533", str(tmp_path / "run.py"),
                           "train", "--store", str(tmp_path / "store.npz"), *outputs],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    err = done.stderr
    assert done.returncode != 0
    assert f"error: rank 0: {tmp_path / 'm.pt.last'}: No space left on device" in err, err[-3000:]
    assert f"error: rank 1: stopped because rank 0 failed writing {tmp_path / 'm.pt.last'} after epoch 0" in err, \
        err[-3000:]
    assert err.count("error: ") == 2 and "pair.cc" not in err and "model/train.py" not in err, err[-3000:]
    # torchrun's closing summary names the failure, not only a link to its docs: as its root cause,
    # the rank torchrun saw end first, which depends on load (rank 1's line names rank 0's file)
    assert f"traceback : rank 0: {tmp_path / 'm.pt.last'}: No space left on device" in err or \
        f"traceback : rank 1: stopped because rank 0 failed writing {tmp_path / 'm.pt.last'}" in err, err[-3000:]

    # a bad store: every rank stops before any process group exists. Rank 1 comes late (as under
    # load); it used to be killed by torchrun before it printed, as soon as rank 0 had ended
    store = make_store(n_dialogues=9)
    store["visual"][3, 1] = np.nan
    np.savez(tmp_path / "bad.npz", **store)
    (tmp_path / "late.py").write_text(RANK1_LATE)
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29534", str(tmp_path / "late.py"),
                           "train", "--store", str(tmp_path / "bad.npz"), *outputs],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    err = done.stderr
    said = [line for line in err.splitlines() if line.startswith("error: ") and "hold non-finite visual values" in line]
    assert done.returncode != 0 and len(said) == 2, err[-3000:]   # one line per rank
    assert "[Gloo]" not in err + done.stdout, err[-3000:]   # no process group: no rank waited on another
