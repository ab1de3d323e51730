"""Transcription, measured: words on real clips, speakers on generated conversations, speed.

    python bench/transcribe.py --data ../shared/data --run data/models

- **wer**: word error rate of Whisper base and tiny.en, over the words of the real clips whose
  words are known (the MELD clip, the IEMOCAP clip, the six CREMA-D clips saying "Don't forget
  a jacket"), pooled: (substitutions + deletions + insertions) / reference words.
- **wer_settings**: the same pooled WER from Whisper's decoding alone, per model, compute type
  (int8, float32), beam (5, 1) and VAD (on, off): how far decoding settings move it.
- **der**: diarization error rate on generated conversations (``pipeline.demo.recording``:
  eSpeak voices, one per speaker, known words and times) of 2, 3 and 4 speakers, ``--seeds``
  each, with a 0.25 s collar around each true turn's edges (NIST's usual forgiveness), the
  speaker count estimated (the shipped params). ``der_given`` tells the count; ``der_overlap``
  has 30 % of the turns start 0.6 s before the previous one ends. ``turn_count_error``:
  |turns found - turns| / turns, mean over seeds.
- **speaking_face**: on generated conversations with every speaker's face on screen
  (``layout: together``; 2, 3 and 4 speakers, ``--seeds`` each, 30 % of turns overlapped),
  transcribed and diarized as above, the share of utterances whose visual features come from
  the face of the person really speaking (the true turn it overlaps most): ``visual.speaker:
  largest`` (the largest face: a guess among faces of one size), ``active`` without and with
  ``tie_speakers``.
- **rtf**: real-time factor (seconds of recording per second of wall time; higher is faster)
  on 2 cores of a ``--minutes`` long generated conversation: ``transcribe`` alone and the whole
  ``predict --video`` (transcription, the three extractors, the model; fresh caches, process
  start included), each a separate command as a user runs it; and transcription alone per model
  (``common.WHISPER_VARIANTS``: base, tiny.en, and tiny.en with beam 1).

Run it alone: the machine has 2 cores. The last line is one JSON object:
{"wer": {"base", "tiny_en"}, "wer_by_corpus": {model: {corpus}}, "wer_per_clip": {...}, "wer_settings": {...}, "der": {"2", "3", "4"}, "der_given": {...},
 "der_overlap": {...}, "turn_count_error": {...}, "speakers_found": {...},
 "speaking_face": {"largest", "active", "tied": {"2", "3", "4"}}, "rtf": {"predict_video",
 "transcribe", "transcribe_base", "transcribe_tiny_en", "transcribe_tiny_en_beam1"}, "minutes": ..}.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import WHISPER_VARIANTS, last_line  # first: it pins the CPU kernels before numpy loads
import numpy as np

from extractors.speech import Transcriber, TranscribeConfig, diarization_error_rate, word_error_rate
from pipeline.demo.recording import RecordingSpec, make_recording

ROOT = Path(__file__).resolve().parents[1]


def real_clips(data: Path) -> dict:
    """{clip: its known words} for the real clips in ``data`` that are there."""
    import pandas as pd

    from pipeline.manifest import read_csv_any_encoding

    known = {}
    meld = data / "real_clips" / "meld_train_dia0_utt0.mp4"
    if meld.is_file():
        known[meld] = str(read_csv_any_encoding(data / "meld_text" / "train_sent_emo.csv")["Utterance"][0])
    iemocap = data / "real_clips" / "Ses05F_impro03_F000.mp4"
    if iemocap.is_file():
        table = pd.read_csv(data / "iemocap_text" / "iemocap_utterances.csv")
        first = table[(table["dialogue_id"] == "Ses05F_impro03") & (table["speaker"] == "F")].iloc[0]
        known[iemocap] = str(first["text"])
    for clip in sorted((data / "cremad_clips").glob("*.flv")):
        known[clip] = "Don't forget a jacket"
    return known


def words_heard(transcriber, clip) -> str:
    result = transcriber.extract(str(clip))
    return " ".join(u["text"] for u in result.info.get("utterances", []))


def corpus_of(clip: Path) -> str:
    return "cremad" if clip.suffix == ".flv" else "meld" if clip.name.startswith("meld") else "iemocap"


def wer_table(data: Path, weights: Path, log) -> tuple[dict, dict, dict]:
    """Pooled WER per model, and per corpus; each clip's WER and what was heard."""
    from extractors.speech import normalised_words

    clips, pooled, by_corpus, per_clip = real_clips(data), {}, {}, {}
    for model in ("base", "tiny.en"):
        name = model.replace(".", "_")
        transcriber = Transcriber(TranscribeConfig(model=model, cpu_threads=2), weights)
        counts = {}
        for clip, truth in clips.items():
            heard = words_heard(transcriber, clip)
            n = len(normalised_words(truth))
            rate = word_error_rate(truth, heard)
            for key in ("all", corpus_of(clip)):
                errors, words = counts.get(key, (0.0, 0))
                counts[key] = (errors + rate * n, words + n)
            per_clip.setdefault(clip.name, {})[name] = {"wer": round(rate, 3), "heard": heard}
            log(f"wer {model} {clip.name}: {rate:.2f} ({heard!r} for {truth!r})")
        pooled[name] = round(counts["all"][0] / max(counts["all"][1], 1), 4)
        by_corpus[name] = {k: round(e / max(w, 1), 4) for k, (e, w) in counts.items() if k != "all"}
    return pooled, by_corpus, per_clip


def decoding_settings(data: Path, weights: Path, log) -> dict:
    """Pooled WER of Whisper's decoding alone (no utterances or speakers) on the real clips, per
    model, compute type, beam size and VAD on or off: how far the settings move it."""
    from faster_whisper import WhisperModel

    from extractors.media import load_audio
    from extractors.speech import normalised_words
    from extractors.weights import whisper_folder

    clips = real_clips(data)
    signals = {clip: load_audio(str(clip)) for clip in clips}
    vad = {"threshold": 0.5, "min_silence_duration_ms": 300, "speech_pad_ms": 200}
    out = {}
    for model in ("base", "tiny.en"):
        for compute in ("int8", "float32"):
            whisper = WhisperModel(str(whisper_folder(model, weights)), device="cpu", compute_type=compute, cpu_threads=2)
            for beam in (5, 1):
                for vad_on in (True, False):
                    errors = words = 0.0
                    for clip, truth in clips.items():
                        segments, _ = whisper.transcribe(signals[clip], language="en", beam_size=beam, vad_filter=vad_on,
                                                         vad_parameters=vad if vad_on else None, word_timestamps=True,
                                                         condition_on_previous_text=False)
                        n = len(normalised_words(truth))
                        errors += word_error_rate(truth, " ".join(seg.text.strip() for seg in segments)) * n
                        words += n
                    name = f"{model.replace('.', '_')}_{compute}_beam{beam}_{'vad' if vad_on else 'novad'}"
                    out[name] = round(errors / max(words, 1), 3)
                    log(f"settings {name}: {out[name]}")
    return out


def diarization(weights: Path, seeds: int, workdir: Path, log) -> dict:
    out = {"der": {}, "der_given": {}, "der_overlap": {}, "turn_count_error": {}, "speakers_found": {}}
    estimated = Transcriber(TranscribeConfig(cpu_threads=2), weights)
    for speakers in (2, 3, 4):
        given = Transcriber(replace(estimated.config, speakers=speakers), weights)
        rows = {k: [] for k in out}
        for seed in range(seeds):
            for overlap in (0.0, 0.3):
                path = workdir / f"conv{speakers}_{seed}_{overlap}.mp4"
                truth = make_recording(path, RecordingSpec(speakers=speakers, turns=10, seed=seed, overlap=overlap))
                found = estimated.extract(str(path)).info["utterances"]
                der = diarization_error_rate(truth["turns"], found, collar=0.25)
                if overlap:
                    rows["der_overlap"].append(der)
                    continue
                known = given.extract(str(path)).info["utterances"]
                rows["der"].append(der)
                rows["der_given"].append(diarization_error_rate(truth["turns"], known, collar=0.25))
                rows["turn_count_error"].append(abs(len(found) - len(truth["turns"])) / len(truth["turns"]))
                rows["speakers_found"].append(len({u["speaker"] for u in found}))
                log(f"der {speakers} speakers seed {seed}: {der:.3f} (given the count {rows['der_given'][-1]:.3f}), "
                    f"{len(found)} turns of {len(truth['turns'])}, {rows['speakers_found'][-1]} speakers")
        for key, values in rows.items():
            out[key][str(speakers)] = values if key == "speakers_found" else round(float(np.mean(values)), 4)
    return out


def speaking_faces(weights: Path, seeds: int, workdir: Path, log) -> dict:
    import pandas as pd

    from extractors.visual import VisualConfig, VisualExtractor
    from pipeline.stages.media import extract_raw
    from pipeline.transcripts import conversation_rows

    transcriber = Transcriber(TranscribeConfig(cpu_threads=2), weights)
    finder = VisualExtractor(VisualConfig()).finder   # built once: MediaPipe's graph loads per extractor
    variants = {"largest": VisualConfig(), "active": VisualConfig(speaker="active", tie_speakers=False),
                "tied": VisualConfig(speaker="active")}
    out = {name: {} for name in variants}
    for speakers in (2, 3, 4):
        right = {name: [] for name in variants}
        for seed in range(seeds):
            path = workdir / f"faces{speakers}_{seed}.mp4"
            truth = make_recording(path, RecordingSpec(speakers=speakers, turns=10, seed=seed, overlap=0.3,
                                                       layout="together"))
            result = transcriber.extract(str(path))
            rows = pd.DataFrame(conversation_rows(path, result, str(path)))
            panel = [_speaking(u, truth["turns"]) for u in rows.to_dict("records")]
            for name, config in variants.items():
                infos = extract_raw("visual", rows, config, workdir / "cache", 1, progress=False)[3]
                if name == "largest":   # its info has no place: the largest face's is the first track's
                    infos = [dict(i, speaker_x=_largest_x(finder, path, u)) for i, u in zip(infos, rows.to_dict("records"))]
                right[name] += [i.get("speaker_x") is not None and int(i["speaker_x"] * speakers) == k
                                for i, k in zip(infos, panel)]
            log(f"speaking face, {speakers} speakers seed {seed}: " +
                ", ".join(f"{n} {np.mean(r[-len(panel):]):.2f}" for n, r in right.items()))
        for name in variants:
            out[name][str(speakers)] = round(float(np.mean(right[name])), 3)
    return {"speaking_face": out}


def _speaking(utterance: dict, turns: list[dict]) -> int:
    """The panel (0-based speaker) of the true turn that overlaps the utterance most."""
    best = max(turns, key=lambda t: min(utterance["end"], t["end"]) - max(utterance["start"], t["start"]))
    return int(best["speaker"][1:]) - 1


def _largest_x(finder, path: Path, utterance: dict) -> float | None:
    """Where ``speaker: largest``'s face is: the largest face on the utterance's middle frame."""
    from extractors.faces import largest
    from extractors.media import load_frames

    middle = (utterance["start"] + utterance["end"]) / 2
    frames, _ = load_frames(path, 25.0, middle, middle + 0.04, 480, True)
    box = largest(finder.find_all(frames[0])) if len(frames) else None
    return None if box is None else (box[0] + box[2] / 2) / frames[0].shape[1]


def timed(command: list[str], log) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    seconds = time.perf_counter() - start
    log(f"{seconds:.1f} s: {' '.join(command)}")
    return seconds


def speed(run: Path, minutes: float, weights: Path, workdir: Path, log, alone: bool = True) -> dict:
    turns = int(minutes * 60 / 2.9)   # a generated turn and its pause take about 2.9 s
    long = workdir / "long.mp4"
    truth = make_recording(long, RecordingSpec(speakers=2, turns=turns, seed=0))
    seconds = truth["duration"]
    log(f"a {seconds / 60:.1f}-minute recording of {turns} turns")
    rtf = {}
    for name, (model, beam) in WHISPER_VARIANTS.items() if alone else ():
        transcriber = Transcriber(TranscribeConfig(model=model, beam_size=beam, cpu_threads=2), weights)
        start = time.perf_counter()
        transcriber.extract(str(long))
        rtf[f"transcribe_{name}"] = round(seconds / (time.perf_counter() - start), 2)
    python = sys.executable
    if alone:
        rtf["transcribe"] = round(seconds / timed([python, "-m", "pipeline", "transcribe", "--root", str(long), "--out",
                                                   str(workdir / "heard"), "--cache", str(workdir / "cache_t")], log), 2)
    if run.is_dir():
        command = [python, "-m", "pipeline", "predict", "--run", str(run), "--video", str(long), "--out",
                   str(workdir / "long.csv"), "--cache", str(workdir / "cache_p")]
        rtf["predict_video"] = round(seconds / timed(command, log), 2)
    else:
        log(f"{run}: no trained run (dvc repro makes data/models): predict_video not timed")
    return {"rtf": rtf, "minutes": round(seconds / 60, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--run", default=str(ROOT / "data" / "shipped" / "meld-context"),
                        help="the run predict --video uses (default: the shipped model; data/models: the demo's)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["wer", "settings", "der", "faces", "speed", "alone"],
                        help="alone: time predict --video only, not transcription alone")
    args = parser.parse_args()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        weights = workdir / "weights"
        result = {}
        if "wer" not in args.skip:
            result["wer"], result["wer_by_corpus"], result["wer_per_clip"] = wer_table(Path(args.data), weights, log)
        if "settings" not in args.skip:
            result["wer_settings"] = decoding_settings(Path(args.data), weights, log)
        if "der" not in args.skip:
            result.update(diarization(weights, args.seeds, workdir, log))
        if "faces" not in args.skip:
            result.update(speaking_faces(weights, args.seeds, workdir, log))
        if "speed" not in args.skip:
            result.update(speed(Path(args.run), args.minutes, weights, workdir, log, "alone" not in args.skip))
    last_line(result)


if __name__ == "__main__":
    main()
