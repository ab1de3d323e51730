"""The real DVC pipeline on a tiny demo corpus, in a throwaway copy of the project."""
import json
import math
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {"demo": {"dialogues": 5, "min_turns": 4, "max_turns": 5, "workers": 2}, "text": {"epochs": 3, "folds": 2},
        "audio": {"dim": 8}, "visual": {"dim": 8}, "train": {"epochs": 2}}
OWNED = {"train": {"train", "model"},   # the model's architecture is its own section, read by train
         "ingest": {"ingest", "transcribe"}}   # a video corpus's utterances come from transcription
DOWNSTREAM_OF_AUDIO = {"audio", "align", "export", "train", "evaluate", "report"}


def run(cmd, cwd):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", PYTHONPATH=str(cwd))
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project's code and pipeline with tiny params, reproduced once."""
    dest = tmp_path_factory.mktemp("project")
    for name in ("pipeline", "extractors", "model", "dvc.yaml", "params.yaml", ".dvc", ".dvcignore",
                 "data/shipped/meld-context"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        elif src.exists():
            shutil.copy(src, dest / name)
    # the shipped model's encoder weights are joined once per machine (400 MB), not once per copy
    (ROOT / "data" / "cache" / "weights").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "cache").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "cache" / "weights").symlink_to(ROOT / "data" / "cache" / "weights")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for stage, values in TINY.items():
        params[stage].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm init", dest)
    first = run("dvc repro", dest)
    return dest, first


def test_repro_runs_every_stage_then_nothing(project):
    dest, first = project
    stages = yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
    for stage in stages:
        assert f"Running stage '{stage}'" in first
    second = run("dvc repro", dest)
    assert "Running stage" not in second
    assert (dest / "dvc.lock").is_file()
    metrics = json.loads((dest / "data" / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["acc"] <= 100 and set(metrics["per_class"]) == {"neutral", "happy", "sad", "angry"}
    assert (dest / "data" / "eval" / "confusion_recall.png").stat().st_size > 1000


def test_every_stage_declares_only_its_own_params(project):
    dest, _ = project
    stages = yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
    top = yaml.safe_load((dest / "params.yaml").read_text())
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            key = entry if isinstance(entry, str) else next(iter(entry))
            assert key.split(".")[0] in OWNED.get(name, {name}), f"stage {name} declares {key}"
            assert key.split(".")[0] in top


def test_changing_one_extractor_reruns_only_it_and_what_follows(project):
    dest, _ = project
    run("git add -A && git -c user.email=t@t -c user.name=t commit -qm repro", dest)
    out = run("dvc exp run -S audio.feature_set=eGeMAPSv02", dest)
    stages = yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
    ran = {s for s in stages if f"Running stage '{s}'" in out}
    assert ran == DOWNSTREAM_OF_AUDIO & set(stages), out


def _conversation(dest):
    """Three of the project's demo clips as a new conversation folder + CSV."""
    clips = sorted((dest / "data" / "demo" / "clips").glob("*.mp4"))[:3]
    folder = dest / "conversation"
    folder.mkdir(exist_ok=True)
    lines = ["turn,speaker,text,media"] + [f"{i},A,hello there,{c.name}" for i, c in enumerate(clips)]
    (folder / "turns.csv").write_text("\n".join(lines) + "\n")
    for c in clips:
        shutil.copy(c, folder / c.name)
    return folder


def test_predict_labels_a_new_conversation_without_retraining(project):
    dest, _ = project
    folder = _conversation(dest)
    before = (dest / "data" / "models" / "dimmn.pt").read_bytes()
    out = run(f"python -m pipeline predict --run data/models --clips {folder} --csv {folder}/turns.csv --out {folder}/pred.csv", dest)
    table = __import__("pandas").read_csv(folder / "pred.csv")
    assert len(table) == 3 and set(table["predicted"]) <= {"neutral", "happy", "sad", "angry"}
    probs = table[[c for c in table.columns if c.startswith("p_")]].to_numpy()
    assert abs(probs.sum(1) - 1).max() < 1e-3 and "predicted" in out
    assert (dest / "data" / "models" / "dimmn.pt").read_bytes() == before


def test_predict_refuses_other_feature_settings(project):
    dest, _ = project
    folder = _conversation(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["audio"]["feature_set"] = "emobase"
    (dest / "other.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(dest))
    done = subprocess.run(f"python -m pipeline predict --run data/models --params other.yaml --clips {folder} --csv {folder}/turns.csv",
                          cwd=dest, env=env, shell=True, capture_output=True, text=True)
    assert done.returncode == 2
    assert re.search(r"audio.feature_set is 'emobase' here but '(ComParE_2016|eGeMAPSv02)' in the run", done.stderr)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["text"]["epochs"], params["audio"]["folds"] = 50, 3   # how parts were trained: they change no feature
    (dest / "other.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run(f"python -m pipeline predict --run data/models --params other.yaml --clips {folder} --csv {folder}/turns.csv "
                          f"--out {dest}/other.csv", cwd=dest, env=env, shell=True, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_report_is_one_offline_page(project):
    dest, _ = project
    page = (dest / "data" / "report" / "index.html").read_text()
    for heading in ("Run", "Coverage", "Training", "Metrics on test", "Dialogues of test"):
        assert f"<h2>{heading}</h2>" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//|@import|url\(|<script", page, re.I)
    assert page.count("<details") >= 2 and "data:image/png;base64," in page


HAMILTON_SRT = """1
00:00:00,500 --> 00:00:02,400
Aaron: How does a bastard, orphan, son of a whore

2
00:00:02,600 --> 00:00:05,000
Hamilton: And a Scotsman, dropped in the middle

3
00:00:05,200 --> 00:00:09,500
Aaron: Get a lot farther by working a lot harder
"""


def test_predict_a_real_recording_with_its_subtitles(project, tmp_path):
    from conftest import shared

    dest, _ = project
    clip = shared("clips/facerec_short_hamilton_clip.mp4")
    shutil.copy(clip, tmp_path / "talk.mp4")
    (tmp_path / "talk.srt").write_text(HAMILTON_SRT)
    out = run(f"python -m pipeline predict --run data/models --video {tmp_path}/talk.mp4 --subtitles {tmp_path}/talk.srt "
              f"--out {tmp_path}/result/talk.csv", dest)
    table = __import__("pandas").read_csv(tmp_path / "result" / "talk.csv")
    assert list(table["speaker"]) == ["Aaron", "Hamilton", "Aaron"] and list(table["start"]) == [0.5, 2.6, 5.2]
    assert table["audio_present"].all() and table["visual_present"].all() and "predicted" in out
    page = (tmp_path / "result" / "talk.html").read_text()
    assert "How does a bastard" in page and "<script" not in page and "Overlaps</h2>" not in page   # nothing heard


def test_predict_a_recording_alone_transcribes_it_and_writes_csv_page_and_subtitles(project, tmp_path):
    from pipeline.demo.recording import RecordingSpec, make_recording

    dest, _ = project
    truth = make_recording(tmp_path / "talk.mp4", RecordingSpec(speakers=2, turns=5, seed=2))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["transcribe"]["speakers"] = 2   # the count known (estimating it is bench/transcribe.py's to measure)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    out = run(f"python -m pipeline predict --run data/models --params {tmp_path}/p.yaml --video {tmp_path}/talk.mp4 "
              f"--out {tmp_path}/result/talk.csv", dest)
    table = __import__("pandas").read_csv(tmp_path / "result" / "talk.csv")
    assert list(table.columns[:8]) == ["utterance_id", "turn", "start", "end", "speaker", "text", "language", "predicted"]
    assert abs(len(table) - len(truth["turns"])) <= 1 and set(table["speaker"]) == {"S1", "S2"}
    assert (table["language"] == "en").all() and table["probability"].between(0, 1).all()
    assert "heard" in out and "language en" in out
    page = (tmp_path / "result" / "talk.html").read_text()
    assert page.index("Timeline") < page.index("Conversation") and 'class="lane"' in page and "<script" not in page
    assert "overlap(s) (two voices at once)" in out and "Overlaps</h2><p>" in page
    srt = (tmp_path / "result" / "talk.srt").read_text()
    assert srt.startswith("1\n00:00:0") and "S1: " in srt and (tmp_path / "result" / "talk.vtt").is_file()
    # a person corrects what was heard and runs again with it: the cues are the utterances now
    corrected = srt.replace("S1: ", "Ann: ").replace("S2: ", "Bob: ")
    (tmp_path / "fixed.srt").write_text(corrected)
    run(f"python -m pipeline predict --run data/models --video {tmp_path}/talk.mp4 --subtitles {tmp_path}/fixed.srt "
        f"--out {tmp_path}/again.csv", dest)
    again = __import__("pandas").read_csv(tmp_path / "again.csv")
    assert set(again["speaker"]) == {"Ann", "Bob"} and len(again) == len(table)


def test_predict_on_silence_is_a_clear_error_and_writes_nothing(project, tmp_path):
    from pipeline.demo.recording import RecordingSpec, make_recording

    dest, _ = project
    make_recording(tmp_path / "quiet.mp4", RecordingSpec(silent=True))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(dest))
    done = subprocess.run(f"python -m pipeline predict --run data/models --video {tmp_path}/quiet.mp4 --out {tmp_path}/q.csv",
                          cwd=dest, env=env, capture_output=True, text=True, shell=True)
    assert done.returncode == 2 and "quiet.mp4: no speech found" in done.stderr, done.stderr
    assert not list(tmp_path.glob("q.*"))


@pytest.mark.parametrize("out, message", [("x.html", "--out names the CSV"), ("predictions", "--out names the CSV")])
def test_predict_refuses_an_out_that_is_not_a_csv(project, tmp_path, out, message):
    dest, _ = project
    folder = _conversation(dest)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(dest))
    done = subprocess.run(f"python -m pipeline predict --run data/models --clips {folder} --csv {folder}/turns.csv --out {tmp_path}/{out}",
                          cwd=dest, env=env, capture_output=True, text=True, shell=True)
    assert done.returncode == 2 and message in done.stderr and not (tmp_path / out).exists()


def test_predict_keeps_transcript_cells_from_becoming_spreadsheet_formulas(project, tmp_path):
    dest, _ = project
    folder = _conversation(dest)
    (folder / "turns.csv").write_text((folder / "turns.csv").read_text().replace("hello there", "=HYPERLINK(1)", 1)
                                      .replace(",A,hello there", ",@B,+1 more", 1))
    run(f"python -m pipeline predict --run data/models --clips {folder} --csv {folder}/turns.csv --out {tmp_path}/p.csv", dest)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert ",'=HYPERLINK(1)," in lines[1] and ",'@B,'+1 more," in lines[2]


def test_the_pretrained_backbones_rerun_only_their_branches_and_predict_uses_them(project, tmp_path):
    dest, _ = project
    run("git add -A && git -c user.email=t@t -c user.name=t commit -qm before-backbones", dest)
    out = run("dvc exp run -S audio.backbone=whisper -S audio.layer=4 -S visual.backbone=expression", dest)
    stages = yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
    ran = {s for s in stages if f"Running stage '{s}'" in out}
    assert ran == (DOWNSTREAM_OF_AUDIO | {"visual"}) & set(stages), out
    for modality, raw_dim in (("audio", 512), ("visual", 540)):
        record = json.loads((dest / "data" / "features" / f"{modality}.npz.meta.json").read_text())
        assert record["raw_dim"] == raw_dim and record["dim"] == 8
    assert (dest / "data" / "cache" / "weights" / "whisper-base" / "model.bin").is_file()
    folder = _conversation(dest)
    run(f"python -m pipeline predict --run data/models --clips {folder} --csv {folder}/turns.csv --out {tmp_path}/p.csv", dest)
    table = __import__("pandas").read_csv(tmp_path / "p.csv")
    assert len(table) == 3 and table["audio_present"].all() and table["visual_present"].all()


def test_a_demo_trained_run_says_so_on_the_terminal_and_at_the_top_of_the_page(project):
    dest, _ = project
    folder = _conversation(dest)
    out = run(f"python -m pipeline predict --run data/models --clips {folder} --csv {folder}/turns.csv "
              f"--out {folder}/demo.csv", dest)
    assert "trained on the synthetic demo corpus" in out and "Leave out --run" in out
    page = (folder / "demo.html").read_text()
    assert 'class="warn"' in page and page.index('class="warn"') < page.index("<h2>")
    assert "synthetic demo corpus" in page


SHIPPED_CLASSES = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
SHIPPED_COLUMNS = (["start", "end", "speaker", "text", "language", "predicted", "probability"]
                   + [f"{prefix}{c}" for prefix in ("p_", "text_p_", "face_p_") for c in SHIPPED_CLASSES] + ["face"])


def _shipped_checks(table, page: str, out: str):
    """What every shipped-model prediction holds: the fixed columns, distributions, the model named."""
    assert list(table.columns) == SHIPPED_COLUMNS   # exactly these: a check reads them
    for prefix in ("p_", "text_p_"):
        probs = table[[f"{prefix}{c}" for c in SHIPPED_CLASSES]].to_numpy()
        assert abs(probs.sum(1) - 1).max() < 1e-3
    faces = table[[f"face_p_{c}" for c in SHIPPED_CLASSES]]
    assert (faces.notna().all(1) == table["face"].notna()).all()   # a face's numbers exactly where a face was read
    assert set(table["predicted"]) <= set(SHIPPED_CLASSES)
    assert "synthetic demo" not in out and "trained on MELD" in out and "trained on MELD" in page
    assert "<script" not in page and not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)


def test_predict_without_a_run_reads_words_and_the_face_with_the_shipped_model(project, tmp_path):
    from conftest import shared

    dest, _ = project
    shutil.copy(shared("clips/facerec_short_hamilton_clip.mp4"), tmp_path / "talk.mp4")
    (tmp_path / "talk.srt").write_text(HAMILTON_SRT)
    out = run(f"python -m pipeline predict --video {tmp_path}/talk.mp4 --subtitles {tmp_path}/talk.srt "
              f"--out {tmp_path}/result/talk.csv", dest)
    table = __import__("pandas").read_csv(tmp_path / "result" / "talk.csv")
    page = (tmp_path / "result" / "talk.html").read_text()
    _shipped_checks(table, page, out)
    assert table["face"].notna().all()   # one face, on screen throughout
    assert page.count("data:image/jpeg;base64,") == 3   # the face read for each turn
    assert 'href="../talk.mp4#t=0.5,2.4"' in page   # opens the recording at the turn (a media fragment)
    assert 'class="facelane"' in page and page.index("Timeline") < page.index("Turns")


def test_predict_without_a_run_on_a_generated_recording_names_the_turns_without_a_face(project, tmp_path):
    from pipeline.demo.recording import RecordingSpec, make_recording
    from pipeline.transcripts import subtitles_text

    dest, _ = project
    truth = make_recording(tmp_path / "talk.mp4", RecordingSpec(speakers=2, turns=4, seed=1))
    cues = [{"start": t["start"], "end": t["end"], "speaker": t["speaker"], "text": t["text"]} for t in truth["turns"]]
    (tmp_path / "talk.srt").write_text(subtitles_text(cues))
    out = run(f"python -m pipeline predict --video {tmp_path}/talk.mp4 --subtitles {tmp_path}/talk.srt "
              f"--out {tmp_path}/talk.csv", dest)
    table = __import__("pandas").read_csv(tmp_path / "talk.csv")
    page = (tmp_path / "talk.html").read_text()
    _shipped_checks(table, page, out)
    assert len(table) == 4
    pictures = page.count("data:image/jpeg;base64,") + page.count(">no face<")
    assert pictures == 4   # each turn shows the face that was read, or says there was none
    start, end = table.loc[0, ["start", "end"]]
    first, last = math.floor(start * 10 + 1e-6) / 10, math.ceil(end * 10 - 1e-6) / 10   # the turn, in tenths around it
    assert f'href="talk.mp4#t={first:.1f},{last:.1f}"' in page
