"""``python -m pipeline <command>``: every DVC stage's command, runnable by hand on any data.

Each command takes its defaults from its own section of ``params.yaml`` (``--params`` names
another file); flags given on the command line win. This module only parses arguments: the
work is in ``pipeline.stages.<stage>``, imported when its command runs (``train`` loads no
media library).
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

from pipeline.artifacts import PATHS, RUN_FILES

COMMANDS = {}


def command(name, help_text):
    def register(func):
        COMMANDS[name] = (func, help_text)
        return func
    return register


def stage(name: str):
    return import_module(f"pipeline.stages.{name}")


@command("demo", "generate the built-in demo corpus of real .mp4 clips")
def demo_cmd(p):
    p.add_argument("--out", default=PATHS["demo"], help="output folder")
    p.add_argument("--dialogues", type=int, help="number of dialogues (params: demo.dialogues)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int)
    return lambda a: stage("demo").run(a.out, a.params, a.dialogues, a.seed, a.workers)


@command("ingest", "read a dataset's layout into a manifest CSV")
def ingest_cmd(p):
    p.add_argument("--format", help="demo | generic | meld | iemocap | subtitles | video (params: ingest.format)")
    p.add_argument("--root", help="dataset folder (params: ingest.root)")
    p.add_argument("--csv", help="generic format: the CSV (default ROOT/manifest.csv)")
    p.add_argument("--labels", nargs="*", help="generic: the label set; meld: emotion|sentiment; subtitles: a CSV "
                                                "of utterance_id, label; video: a CSV of dialogue, start, end, label")
    p.add_argument("--out", default=PATHS["manifest"])
    p.add_argument("--cache", help="video format: cache root of the transcripts (params: ingest.cache; default "
                                   f"{PATHS['cache']})")
    return lambda a: stage("ingest").run(a.out, a.params, a.format, a.root, a.csv, a.labels, a.cache)


@command("transcribe", "find the speech, words and speakers in recordings: JSON, SRT and WebVTT per video")
def transcribe_cmd(p):
    p.add_argument("--root", required=True, help="a video, or a folder of videos")
    p.add_argument("--out", default=PATHS["transcripts"], help="folder for <video>.json, .srt, .vtt")
    p.add_argument("--cache", default=PATHS["cache"], help="cache root (transcripts and the joined Whisper weights)")
    p.add_argument("--workers", type=int)
    p.add_argument("--scheduler", help="a Dask scheduler, tcp://HOST:PORT (params: transcribe.scheduler)")
    return lambda a: stage("transcribe").run(a.root, a.out, a.params, a.cache, a.workers, a.scheduler)


@command("text", "train the text CNN on the training transcripts and featurise every utterance")
def text_cmd(p):
    p.add_argument("--manifest", default=PATHS["manifest"])
    p.add_argument("--out", default=f"{PATHS['features']}/text.npz")
    p.add_argument("--model", default=f"{PATHS['models']}/{RUN_FILES['text']}", help="the trained extractor")
    p.add_argument("--cache", default=PATHS["cache"], help="cache root (the cross-fitting folds' parts)")
    return lambda a: stage("text").run(a.manifest, a.out, a.model, a.params, a.cache)


def _media_command(modality, help_text):
    @command(modality, help_text)
    def factory(p):
        p.add_argument("--manifest", default=PATHS["manifest"])
        p.add_argument("--out", default=f"{PATHS['features']}/{modality}.npz")
        p.add_argument("--model", default=f"{PATHS['models']}/{RUN_FILES[modality]}", help="the fitted part")
        p.add_argument("--cache", default=PATHS["cache"], help="per-utterance cache root")
        p.add_argument("--workers", type=int)
        p.add_argument("--scheduler", help="a Dask scheduler, tcp://HOST:PORT: its workers extract the clips "
                                           "(params: scheduler; default: local worker processes)")
        return lambda a: stage("media").run(modality, a.manifest, a.out, a.model, a.cache, a.params, a.workers,
                                            a.scheduler)
    return factory


_media_command("audio", "openSMILE (or fbank) features per clip, standardised and reduced on train")
_media_command("visual", "face-crop descriptors per clip (handcrafted or 3D-CNN), reduced on train")


@command("align", "align the modality features by utterance id into one store, with a coverage report")
def align_cmd(p):
    p.add_argument("--manifest", default=PATHS["manifest"])
    p.add_argument("--features", default=PATHS["features"], help="folder of <modality>.npz")
    p.add_argument("--out", default=PATHS["store"])
    p.add_argument("--report", default=PATHS["coverage"])
    return lambda a: stage("align").run(a.manifest, a.features, a.out, a.report)


@command("export", "write the aligned store as .npz, CSV and the conv-emotion pickle layout")
def export_cmd(p):
    p.add_argument("--store", default=PATHS["store"])
    p.add_argument("--out", default=PATHS["export"])
    p.add_argument("--formats", nargs="+", choices=["npz", "csv", "pickle"])
    return lambda a: stage("exchange").run_export(a.store, a.out, a.params, a.formats)


@command("import", "read features made elsewhere (conv-emotion pickle, MOSI CSV) into a store")
def import_cmd(p):
    p.add_argument("--format", required=True, choices=["pickle", "mosi"])
    p.add_argument("--src", required=True, help="the pickle file, or the MOSI folder")
    p.add_argument("--out", required=True, help="the store to write (.npz)")
    p.add_argument("--classes", nargs="*", help="pickle: class names in label order")
    return lambda a: stage("exchange").run_import(a.format, a.src, a.out, a.classes)


def _store_and_model(p):
    """The store and the trained model, as train, evaluate and report name them."""
    p.add_argument("--store", default=PATHS["store"])
    p.add_argument("--checkpoint", default=f"{PATHS['models']}/{RUN_FILES['model']}")


@command("train", "train DIMMN (or a baseline) on the store's train split, early stopping on valid")
def train_cmd(p):
    _store_and_model(p)
    p.add_argument("--history", default=PATHS["history"], help="per-epoch metrics (DVC plots)")
    p.add_argument("--summary", default=PATHS["summary"])
    return lambda a: stage("train").run(a.store, a.checkpoint, a.history, a.summary, a.params)


@command("evaluate", "metrics, confusion matrices (CSV for DVC plots, PNG) of a trained model on a split")
def evaluate_cmd(p):
    _store_and_model(p)
    p.add_argument("--out", default=PATHS["eval"])
    p.add_argument("--split", help="params: evaluate.split (default test)")
    return lambda a: stage("evaluate").run(a.store, a.checkpoint, a.out, a.params, a.split)


@command("report", "one offline HTML page about the run: params, coverage, curves, metrics, attention")
def report_cmd(p):
    _store_and_model(p)
    p.add_argument("--eval", default=PATHS["eval"], help="evaluate's folder")
    p.add_argument("--history", default=PATHS["history"])
    p.add_argument("--summary", default=PATHS["summary"])
    p.add_argument("--features", default=PATHS["features"])
    p.add_argument("--out", default=PATHS["report"])
    return lambda a: stage("report").run(a.store, a.checkpoint, a.eval, a.history, a.summary, a.features, a.out,
                                         a.params)


@command("ship", "train the shipped conversation model (words in context) on MELD's CSVs; predict's default run")
def ship_cmd(p):
    p.add_argument("--meld", help="folder of MELD's train/dev/test_sent_emo.csv (params: ship.meld)")
    p.add_argument("--out", default=PATHS["shipped"], help="the model's folder")
    p.add_argument("--cache", default=PATHS["cache"], help="cache root (the encoded utterances, the joined weights)")
    return lambda a: stage("ship").run(a.out, a.params, a.cache, a.meld)


@command("predict", "label a new conversation (clips + CSV, a video + subtitles, or a video alone) with a trained run")
def predict_cmd(p):
    p.add_argument("--run", dest="run_dir", help=f"a run folder trained with dvc repro ({PATHS['models']}); default: "
                                                  f"the shipped model, trained on real conversations ({PATHS['shipped']})")
    p.add_argument("--clips", help="folder of the conversation's clips (with --csv)")
    p.add_argument("--csv", help="turn, speaker, text, media (relative to --clips)")
    p.add_argument("--video", help="one recording: with --subtitles each cue is an utterance; alone, its speech is "
                                   "transcribed (utterances, words, speakers) and what was heard written as .srt/.vtt")
    p.add_argument("--subtitles", help="the recording's .srt or .vtt (speakers from <v Name> or NAME:)")
    p.add_argument("--out", default="predictions.csv", help="the CSV; the HTML page is written beside it")
    p.add_argument("--cache", default=PATHS["cache"])
    return lambda a: stage("predict").run(a.run_dir, a.out, a.params, a.cache, clips=a.clips, csv=a.csv,
                                          video=a.video, subtitles=a.subtitles)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (factory, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--params", help="parameters file (default: params.yaml where there is one, else every default)")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        p.set_defaults(run=factory(p))
    return parser


def main(argv=None) -> int:
    from pipeline.errors import USER_ERRORS, error_line, tell_torchrun

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:   # Ctrl-C: one line saying how to go on, not a traceback
        if args.debug:
            raise
        line = f"{args.command}: interrupted; {RESUME.get(args.command, RESUME[None])}"
        print(f"\nerror: {line}", file=sys.stderr)
        tell_torchrun(line)
        return 130
    except USER_ERRORS as exc:
        if args.debug:
            raise
        if not getattr(exc, "reported", False):   # a torchrun rank that said it already (model.train.together)
            print(f"error: {error_line(exc)}", file=sys.stderr)
        tell_torchrun(error_line(exc))
        return 2
    except OSError as exc:   # a folder made read-only mid-run, a full disk: name the file, no traceback
        if args.debug:
            raise
        line = f"{exc.filename}: {exc.strerror or exc}" if exc.filename else f"{args.command}: {exc}"
        print(f"error: {line}", file=sys.stderr)
        tell_torchrun(line)
        return 2
    except (MemoryError, RuntimeError) as exc:   # sizes in params past this machine's memory
        if args.debug or not out_of_memory(exc):
            raise
        line = (f"{args.command}: out of memory ({' '.join(str(exc).split())[:160]}); lower the sizes in params "
                f"(model.d, text.feature_maps / widths / max_len, batch_size, dim)")
        print(f"error: {line}", file=sys.stderr)
        tell_torchrun(line)
        return 2
    return 0


CACHED = "run the same command again: what was finished is cached and not done again"
RESUME = {
    "train": "run it again with train.resume: true (params) to go on after the last finished epoch "
             "(<checkpoint>.last); as it is, it starts over",
    "transcribe": CACHED + " (each finished recording)",
    "audio": CACHED + " (each finished clip)", "visual": CACHED + " (each finished clip)",
    "ingest": CACHED + " (for videos: each finished transcript)", "predict": CACHED + " (features, transcripts)",
    "text": CACHED + " (the cross-fitting folds)",
    None: "each output is written whole or not at all: run the same command again",
}


def out_of_memory(exc: BaseException) -> bool:
    """numpy's MemoryError, or torch's allocator refusing (a RuntimeError)."""
    return isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "out of memory" in str(exc)
