"""Settings with a range, work in proportion, and readers that take what a user means (issue 32,
sections 2, 3 and 5): each case gave a silent wrong result, a hang, or a false error before."""
import pickle
import time
import typing
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import ParamsError, PipelineError
from test_model import make_store


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def section_configs():
    """Every params section and the configs its stage builds from it."""
    from extractors.audio import AudioConfig
    from extractors.speech import TranscribeConfig
    from extractors.visual import VisualConfig
    from model.dimmn import ModelConfig
    from model.train import TrainConfig
    from pipeline.crossfit import CrossFitting
    from pipeline.demo.corpus import DemoConfig
    from pipeline.stages import text
    from pipeline.stages.demo import DemoStage
    from pipeline.stages.evaluate import EvaluateConfig
    from pipeline.stages.exchange import ExportConfig
    from pipeline.stages.ingest import HoldoutConfig
    from pipeline.stages.media import Cnn3dTraining, MediaStage
    from pipeline.stages.report import ReportConfig
    from pipeline.transcripts import TranscribeStage

    return {"demo": (DemoConfig, DemoStage), "ingest": (HoldoutConfig,), "transcribe": (TranscribeConfig, TranscribeStage),
            "text": text.CONFIGS, "audio": (AudioConfig, MediaStage, CrossFitting),
            "visual": (VisualConfig, MediaStage, CrossFitting, Cnn3dTraining), "export": (ExportConfig,),
            "model": (ModelConfig,), "train": (TrainConfig,), "evaluate": (EvaluateConfig,), "report": (ReportConfig,)}


def test_every_number_in_params_has_a_range():
    """transcribe.window_s had none (0 and -5 were taken, and two speakers became one): every
    number any section reads is checked against a range, by its name or section.name."""
    from pipeline.params import LIMITS, SECTIONS

    numeric = (int, float, int | None, float | None)
    unbounded = []
    for name, classes in section_configs().items():
        assert name in SECTIONS
        for cls in classes:
            hints = typing.get_type_hints(cls)
            for f in fields(cls):
                if hints[f.name] in numeric and f.name not in LIMITS and f"{name}.{f.name}" not in LIMITS:
                    unbounded.append(f"{name}.{f.name}")
    assert not unbounded, unbounded


@pytest.mark.parametrize("section, values, words", [
    ("transcribe", {"window_s": 0}, "window_s: 0 is out of range"),
    ("transcribe", {"window_s": -5}, "window_s: -5 is out of range"),
    ("transcribe", {"speakers": 100, "max_speakers": 8}, "speakers 100 is more than max_speakers 8"),
    ("transcribe", {"cpu_threads": 4096}, "cpu_threads: 4096 is out of range"),
    ("transcribe", {"workers": 100000}, "workers: 100000 is out of range"),
    ("audio", {"workers": 100000}, "workers: 100000 is out of range"),
    ("demo", {"workers": 100000}, "workers: 100000 is out of range"),
    ("demo", {"fps": 100000}, "fps: 100000 is out of range"),
    ("demo", {"sample_rate": 1}, "sample_rate 1: give one of AAC's rates"),
    ("demo", {"sample_rate": 100}, "sample_rate 100: give one of AAC's rates"),
])
def test_a_setting_out_of_range_is_refused_before_work(section, values, words):
    from pipeline.params import configs

    with pytest.raises(ParamsError, match=words):
        configs(section, values, *section_configs()[section])


def test_export_with_no_format_is_an_error_not_nothing_written(tmp_path, capsys):
    np.savez(tmp_path / "store.npz", **make_store())
    (tmp_path / "p.yaml").write_text("export: {formats: []}\n")
    code, err = _cli(["export", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
                      "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "names no format" in err, err


def test_workers_are_capped_at_the_work_and_the_cores():
    """transcribe --workers 64 on one recording loaded 64 Whisper models for one to use."""
    from extractors.base import parallel_workers, usable_cores

    assert parallel_workers(64, 1) == 1
    assert parallel_workers(64, 0) == 1
    assert parallel_workers(2, 100) == min(2, usable_cores())
    assert parallel_workers(64, 100) == min(64, usable_cores())


def test_a_pickle_of_shared_references_is_refused_before_it_is_walked(tmp_path, capsys):
    """A 35 KB pickle standing for billions of values took 4 GB and 34 s before its error."""
    level = [0.5] * 100
    for _ in range(5):   # 100**6 values written out, a few KB as a pickle
        level = [level] * 100
    bomb = (level,) * 9
    (tmp_path / "bomb.pkl").write_bytes(pickle.dumps(bomb, protocol=4))
    start = time.time()
    code, err = _cli(["import", "--format", "pickle", "--src", str(tmp_path / "bomb.pkl"),
                      "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 2 and "through shared references" in err and time.time() - start < 20, err
    looped = []
    looped.append(looped)   # a list inside itself: walking it never ends
    (tmp_path / "loop.pkl").write_bytes(pickle.dumps((looped,) * 9, protocol=4))
    code, err = _cli(["import", "--format", "pickle", "--src", str(tmp_path / "loop.pkl"),
                      "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 2 and "through shared references" in err, err


def _elsewhere(tmp_path):
    """Every path train reads and writes, in tmp_path (never the working folder's data/)."""
    return ["--store", str(tmp_path / "store.npz"), "--checkpoint", str(tmp_path / "m.pt"),
            "--history", str(tmp_path / "h.csv"), "--summary", str(tmp_path / "s.json")]


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path, capsys):
    """A 459-byte params file printed a 72 MB error line."""
    (tmp_path / "p.yaml").write_text("model:\n  " + BOMB.replace("\n", "\n  ") + "\n")
    code, err = _cli(["train", "--params", str(tmp_path / "p.yaml"), *_elsewhere(tmp_path)], capsys)
    assert code == 2 and "expands to more than" in err and len(err) < 400, err[:400]
    (tmp_path / "q.yaml").write_text("model:\n  d: " + "x" * 100_000 + "\n")   # a long value, quoted shortened
    code, err = _cli(["train", "--params", str(tmp_path / "q.yaml"), *_elsewhere(tmp_path)], capsys)
    assert code == 2 and "model.d" in err and len(err) < 400, err[:400]
    (tmp_path / "r.yaml").write_text("train:\n  " + "\n  ".join(f"k{i}: 1" for i in range(3000)) + "\n")
    code, err = _cli(["train", "--params", str(tmp_path / "r.yaml"), *_elsewhere(tmp_path)], capsys)   # 3000 unknown keys, named briefly
    assert code == 2 and "unknown key(s)" in err and len(err) < 2000, err[:400]


def test_yes_no_on_off_are_words_not_booleans(tmp_path):
    """`transcribe.language: no` (Norwegian) was read by YAML 1.1 as false and refused."""
    from pipeline.params import configs, load_params
    from pipeline.transcripts import transcribe_configs

    (tmp_path / "p.yaml").write_text("transcribe: {language: no}\ntext: {finetune: true}\n")
    params = load_params(tmp_path / "p.yaml")
    assert params["transcribe"]["language"] == "no" and params["text"]["finetune"] is True
    assert transcribe_configs(params["transcribe"])[0].language == "no"
    (tmp_path / "q.yaml").write_text("transcribe: {language: off}\n")   # a word, then Whisper's list decides
    with pytest.raises(ParamsError, match="'off' is not auto or a language code"):
        transcribe_configs(load_params(tmp_path / "q.yaml")["transcribe"])
    (tmp_path / "r.yaml").write_text("report: {dialogues: yes}\n")
    with pytest.raises(ParamsError, match="'yes' is not an integer"):
        configs("report", load_params(tmp_path / "r.yaml")["report"], *section_configs()["report"])


@pytest.mark.parametrize("given", ["TEST", " Test ", "test"])
def test_evaluate_reads_a_split_in_any_case(given, tmp_path, capsys):
    np.savez(tmp_path / "store.npz", **make_store())
    (tmp_path / "p.yaml").write_text(f"evaluate: {{split: '{given}'}}\n")
    code, err = _cli(["evaluate", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
                      "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "eval")], capsys)
    assert code == 2 and "none.pt: model checkpoint not found" in err, err   # past the split, to the missing model
    (tmp_path / "p.yaml").write_text("evaluate: {split: holdout}\n")
    code, err = _cli(["evaluate", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
                      "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "eval")], capsys)
    assert code == 2 and "params evaluate.split: unknown split 'holdout'" in err, err


def test_a_store_with_a_modality_of_no_columns_is_refused(tmp_path, capsys):
    """A store whose visual matrix had 0 columns trained to exit 0."""
    store = make_store()
    store["visual"] = np.zeros((len(store["label"]), 0), np.float32)
    np.savez(tmp_path / "store.npz", **store)
    (tmp_path / "p.yaml").write_text("model: {d: 16, K: 3, L: 2}\ntrain: {epochs: 1}\n")
    code, err = _cli(["train", "--params", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store.npz"),
                      "--checkpoint", str(tmp_path / "m.pt"), "--history", str(tmp_path / "h.csv"),
                      "--summary", str(tmp_path / "s.json")], capsys)
    assert code == 2 and "the visual matrix has no columns" in err, err
    from pipeline.store import save_store
    with pytest.raises(PipelineError, match="the visual matrix has no columns"):   # nor written
        save_store(store, tmp_path / "s2.npz", "import", {})


@pytest.mark.parametrize("times, start, end", [
    ("00:00:00,5 --> 00:00:02,25", 0.5, 2.25),
    ("00:00:01,05 --> 00:00:02,7", 1.05, 2.7),
    ("00:00:01,500 --> 00:00:02,000", 1.5, 2.0),
    ("00:01.5 --> 00:02.25", 1.5, 2.25),
])
def test_subtitle_times_with_short_fractions_read_as_players_read_them(times, start, end, tmp_path):
    """00:00:00,5 --> 00:00:02,25 was read as 0.005-2.025 s."""
    from pipeline.subtitles import read_cues

    suffix = ".vtt" if times.count(":") == 2 else ".srt"
    head = "WEBVTT\n\n" if suffix == ".vtt" else "1\n"
    (tmp_path / f"t{suffix}").write_text(f"{head}{times}\nAnn: hello there\n")
    cues, _ = read_cues(tmp_path / f"t{suffix}")
    assert [(round(c["start"], 3), round(c["end"], 3), c["line"]) for c in cues] == [(start, end, 2 if head == "1\n" else 3)]


@pytest.mark.parametrize("space", ["\u00a0", " ", "\u200b", "\ufeff", "\t"])
def test_spaces_of_any_kind_around_a_header_name_are_not_part_of_it(space, tiny_corpus, tmp_path):
    """A no-break space before `dataset` made another column: the user's dataset was replaced."""
    from pipeline.manifest import read_generic

    root, manifest = tiny_corpus
    rows = "\n".join(f"mine,{r.split},{r.dialogue_id},{r.utterance_id},{r.turn},{r.speaker},{r.text},{r.label},{r.media}"
                     for r in manifest.itertuples())
    (tmp_path / "m.csv").write_text(f"{space}dataset,split,dialogue_id,utterance_id,turn,speaker{space},text,label,"
                                    f"media\n{rows}\n")
    frame = read_generic(tmp_path / "m.csv", root)
    assert set(frame["dataset"]) == {"mine"} and frame["speaker"].tolist() == manifest["speaker"].tolist()


def test_a_header_name_twice_after_spaces_is_an_error(tmp_path):
    from pipeline.manifest import ManifestError, read_csv_any_encoding

    (tmp_path / "m.csv").write_text("label,\u00a0label,text\na,b,c\n")
    with pytest.raises(ManifestError, match=r"line 1: column\(s\) \['label'\] named more than once"):
        read_csv_any_encoding(tmp_path / "m.csv")


def test_a_name_is_one_line_in_subtitles_and_manifest_rows():
    from extractors.base import Result
    from pipeline.transcripts import conversation_rows, subtitles_text

    turns = [{"start": 0.0, "end": 1.0, "speaker": "A\r\nB", "text": "one\ntwo --> three"}]
    text = subtitles_text(turns)
    assert text == "1\n00:00:00,000 --> 00:00:01,000\nA B: one two -> three\n"
    rows = conversation_rows(Path("talk.mp4"), Result(None, {"utterances": turns}), "talk.mp4")
    assert rows[0]["speaker"] == "A B" and "\n" not in rows[0]["text"]


def test_an_empty_or_foreign_part_file_is_one_line(tmp_path):
    """An empty part file in a run folder was an IndexError (pipeline/parts.py:31)."""
    import torch

    from pipeline.parts import load_part

    (tmp_path / "audio.pt").write_bytes(b"")
    with pytest.raises(PipelineError, match="audio.pt: not a fitted part this pipeline wrote"):
        load_part(tmp_path / "audio.pt")
    arrays = {"mean": torch.zeros(4, dtype=torch.float64), "scale": torch.ones(4, dtype=torch.float64),
              "components": torch.zeros(2, 4, dtype=torch.float64), "pca_mean": torch.zeros(4, dtype=torch.float64),
              "whiten_scale": torch.ones(2, dtype=torch.float64)}
    for state, words in [({"method": "zca", "dim": 2, "seed": 0, "arrays": arrays}, "'zca' is not a valid"),
                         ({"method": "pca", "dim": 2, "seed": 0, "arrays": dict(arrays, components=torch.zeros(2, 3))},
                          "the PCA arrays do not fit together"),
                         ({"method": "pca", "dim": 2, "seed": 0, "arrays": dict(arrays, scale=torch.ones(5))},
                          "mean and scale"),
                         ({"method": "kbest", "dim": 2, "seed": 0, "arrays": {
                             "mean": arrays["mean"], "scale": arrays["scale"], "keep": torch.tensor([0, 9])}},
                          "the kept columns"),
                         ({"method": "pca", "dim": 2, "seed": 0}, "'arrays'")]:
        torch.save({"kind": "reducer", "state": state}, tmp_path / "audio.pt")
        with pytest.raises(PipelineError, match=f"cannot be rebuilt .*{words}"):
            load_part(tmp_path / "audio.pt")
    torch.save({"kind": "zca", "state": {}}, tmp_path / "audio.pt")
    with pytest.raises(PipelineError, match="unknown fitted part 'zca'"):
        load_part(tmp_path / "audio.pt")


@pytest.mark.parametrize("config", [{"H": 0}, {"K": 0}, {"d": -1}, {"R": 0}, {"window_size": -2}, {"L": True}])
def test_a_checkpoint_with_sizes_out_of_range_is_one_line(config, tmp_path, capsys):
    """A checkpoint with H: 0 was an UnboundLocalError in model/dimmn.py."""
    import torch

    from model.dimmn import ModelConfig
    from dataclasses import asdict

    blob = {"model_config": dict(asdict(ModelConfig(d=16, K=3, L=2)), **config), "dims": {"text": 12, "audio": 8,
            "visual": 10}, "classes": ["c0", "c1", "c2"], "model": {}}
    torch.save(blob, tmp_path / "m.pt")
    (tmp_path / "none.yaml").write_text("{}\n")
    np.savez(tmp_path / "store.npz", **make_store())
    code, err = _cli(["evaluate", "--params", str(tmp_path / "none.yaml"), "--store", str(tmp_path / "store.npz"),
                      "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "eval")], capsys)
    assert code == 2 and "m.pt: not a DIMMN checkpoint this pipeline wrote (model sizes" in err, err


def test_ctrl_c_in_train_is_one_line_that_says_how_to_resume(tmp_path):
    import signal
    import subprocess
    import sys

    np.savez(tmp_path / "store.npz", **make_store(n_dialogues=40))
    (tmp_path / "p.yaml").write_text("model: {d: 16, K: 3, L: 2}\ntrain: {epochs: 100000, patience: 100000}\n")
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "train", "--params", str(tmp_path / "p.yaml"),
                                "--store", str(tmp_path / "store.npz"), "--checkpoint", str(tmp_path / "m.pt"),
                                "--history", str(tmp_path / "h.csv"), "--summary", str(tmp_path / "s.json")],
                               cwd=root, stderr=subprocess.PIPE, text=True,
                               # a shell's background job ignores SIGINT, and Python then keeps ignoring it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / "m.pt.last").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert process.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert lines == [lines[0]] and "train.resume: true" in lines[0], err[-2000:]


def _wav(path, left, right=None, rate=16000):
    import wave

    channels = np.stack([left, right], axis=1) if right is not None else left[:, None]
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels.shape[1])
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(channels, -1, 1) * 32767).astype("<i2").tobytes())


def test_stereo_whose_channels_cancel_is_read_from_the_louder_channel(tmp_path):
    """A right channel inverted cancelled the mono mix: "no speech found"."""
    from extractors.media import load_audio

    t = np.arange(32000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    _wav(tmp_path / "inverted.wav", tone, -tone)
    _wav(tmp_path / "same.wav", tone, tone)
    _wav(tmp_path / "mono.wav", tone)
    inverted, same, mono = (load_audio(tmp_path / f"{n}.wav") for n in ("inverted", "same", "mono"))
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    assert rms(inverted) > 0.15 and np.abs(inverted - mono).max() < 1e-3
    assert np.array_equal(same, load_audio(tmp_path / "same.wav"))   # an ordinary mix: as before
    assert rms(same) > rms(mono)   # libswresample mixes L and R at -3 dB each: louder than one channel
    segment = load_audio(tmp_path / "inverted.wav", 0.5, 1.0)
    assert len(segment) == 8000 and rms(segment) > 0.15
    _wav(tmp_path / "silent.wav", np.zeros(16000), np.zeros(16000))   # silence stays silence
    assert rms(load_audio(tmp_path / "silent.wav")) == 0


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".m4a"])
def test_a_folder_of_audio_recordings_is_a_folder_of_recordings(suffix, tmp_path, capsys, monkeypatch):
    """A folder of .wav, .mp3 or .m4a files was "no video in the folder" (one such file alone worked)."""
    import pipeline.stages.transcribe as stage
    from test_outputs import _fake_transcripts

    monkeypatch.setattr(stage, "transcribe", _fake_transcripts)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"call{suffix}").write_bytes(b"audio")
    (tmp_path / "in" / "notes.txt").write_text("not a recording")
    code, err = _cli(["transcribe", "--root", str(tmp_path / "in"), "--out", str(tmp_path / "out")], capsys)
    assert code == 0 and (tmp_path / "out" / "call.json").is_file() and not (tmp_path / "out" / "notes.json").exists()
    (tmp_path / "empty").mkdir()
    code, err = _cli(["transcribe", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "no recording (video: .mp4" in err and "audio: .wav" in err, err


def test_an_error_quoting_a_huge_value_is_still_one_short_line(tmp_path, capsys):
    """Any message quoting what a user wrote (here a 100 KB CSV cell) is cut in the middle."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.csv").write_text("dataset,split,dialogue_id,utterance_id,turn,speaker,text,label,media\n"
                                                 f"x,{'s' * 100_000},d,u,0,A,hi,happy,a.mp4\n")
    code, err = _cli(["ingest", "--format", "generic", "--root", str(tmp_path / "d"), "--out", str(tmp_path / "m.csv")],
                     capsys)
    assert code == 2 and len(err) <= 2100 and "manifest.csv" in err and " ... " in err, err[:300]


def _offset_clips(folder):
    """One clip whose audio starts 2 s into the container, one whose video starts 1.5 s in."""
    from extractors.media import write_clip

    frames = np.zeros((60, 64, 64, 3), np.uint8)
    frames[:, :, :, 0] = (np.arange(60) * 4)[:, None, None]
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(48000) / 16000)).astype(np.float32)
    write_clip(folder / "audio_late.mp4", frames, 10, tone, 16000, audio_start=32000)
    write_clip(folder / "video_late.mp4", frames, 10, tone, 16000, video_start=15)
    return folder / "audio_late.mp4", folder / "video_late.mp4"


def test_audio_is_on_the_containers_timeline_with_an_audio_or_a_video_offset(tmp_path):
    """In an mp4 whose audio starts at 2.94 s, every transcribed cue came 2.9 s early and each
    utterance's audio was cut from the wrong speech: sample 0 was the track's first, not time 0."""
    from extractors.media import CorruptMedia, load_audio, load_frames

    audio_late, video_late = _offset_clips(tmp_path)
    loud = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) > 0.1  # noqa: E731
    whole = load_audio(audio_late)
    assert not loud(whole[:int(1.9 * 16000)]) and loud(whole[int(2.1 * 16000):int(4.9 * 16000)])
    assert abs(len(whole) / 16000 - 5.0) < 0.05
    segment = load_audio(audio_late, 1.5, 2.5)   # half before the track starts, half in it
    assert len(segment) == 16000 and not loud(segment[:7000]) and loud(segment[9000:])
    assert loud(load_audio(audio_late, 3.0, 3.5))
    _, times = load_frames(audio_late, fps=2)
    assert times[0] == 0.0   # the picture starts at 0 in both

    assert loud(load_audio(video_late)[:16000]) and abs(len(load_audio(video_late)) / 16000 - 3.0) < 0.05
    frames, times = load_frames(video_late, fps=2, start=2.0, end=3.0)
    assert times.tolist() == [2.0, 2.5] and frames[0, 0, 0, 0] < frames[1, 0, 0, 0]
    with pytest.raises(CorruptMedia, match="no decodable video frame"):   # no picture before 1.5 s
        load_frames(video_late, fps=2, start=0.0, end=1.0)
