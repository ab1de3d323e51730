"""Extraction speed on the real clips in ../shared/data, as a real-time factor (seconds of media
per second of wall time; higher is faster): each modality alone on one process, the decode-only
floor (frames sampled and decoded as the visual stage does, nothing else), all three through the
stages' cache with their default workers, and a Dask LocalCluster with 1 then 2 workers.

"all" runs ``--copies`` segments of every clip through the audio and visual stages (pool start
included), as a corpus of many clips does; "startup_s" is each stage's wall time for the one
shortest clip alone: worker start, imports and model loading, paid once per stage run;
"all_steady" takes it out (a stage's workers import this script, 0.9 s, where the pipeline's
own entry point takes 0.1 s).

    python bench/extract_speed.py --data ../shared/data

Run it alone: the machine has 2 cores. Single-process figures are timed after one untimed clip
(imports and model loading are start-up, reported apart). Stage workers (forkserver) import this
script as their main module, so its top imports stay light. The last line is one JSON object:
{"rtf": {"text", "audio", "audio_whisper", "audio_whisper_stage", "visual", "visual_<variant>", "all",
 "all_steady"}, "floor_rtf", "workers", "startup_s",
 "box_iou_vs_every_frame": {"every_<n>": per clip},
 "dask": {"1": rtf, "2": rtf, "speedup"}, "clips": [...], "face_frames": {variant: per clip}}.
"audio_whisper" is Whisper base's encoder (layer 6, one thread, as each worker runs it);
"audio_whisper_stage" runs it through the cache with the stage's workers (``--copies`` segments
per clip, as "all"; worker start and weight loading included).
"visual" is the default (MediaPipe's detector, handcrafted descriptors); the variants time the
cascade (at full size and on frames downscaled to 240 px), detection on every frame / every 3rd,
decoding every frame (``decode: all``), the landmarks and expression (FER2013 CNN) backbones and
the active speaker.
"""
import argparse
import tempfile
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from common import last_line, repeated_segments  # first: it pins the CPU kernels before numpy loads
import numpy as np

from extractors.audio import AudioConfig, AudioExtractor
from extractors.media import load_frames, probe
from extractors.visual import VisualConfig, VisualExtractor
from pipeline.cache import extract_utterances


def clips(data: Path) -> list[Path]:
    found = [data / "real_clips" / "meld_train_dia0_utt0.mp4", data / "real_clips" / "Ses05F_impro03_F000.mp4",
             data / "clips" / "facerec_short_hamilton_clip.mp4", *sorted((data / "cremad_clips").glob("*.flv"))]
    return [c for c in found if c.is_file()]


def timed(fn, items, warm=None) -> tuple[float, list]:
    """Seconds for ``fn`` over ``items``, after one untimed call on ``warm`` (imports, model loading)."""
    if warm is not None:
        fn(warm)
    start = time.perf_counter()
    out = [fn(i) for i in items]
    return time.perf_counter() - start, out


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes; two frames without a face agree (1)."""
    if a is None or b is None:
        return float(a is None and b is None)
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def box_agreement(paths, config) -> dict:
    """Per clip, the mean IoU of ``config``'s speaker boxes against detection on every frame."""
    exact, fast = VisualExtractor(replace(config, detect_every=1)), VisualExtractor(config)
    out = {}
    for p in paths:
        frames = list(load_frames(p, config.fps, max_side=config.max_side, reference_only=fast.reference_only)[0])
        out[p.name] = round(float(np.mean([iou(a, b) for a, b in zip(exact._largest_boxes(frames),
                                                                      fast._largest_boxes(frames))])), 3)
    return out


def through_cache(paths, config_cls, extractor_cls, config, workers, scheduler=None, copies=1, weights=None) -> float:
    """Wall seconds for every clip through the stage's cache (fresh), ``copies`` segments each;
    ``weights``: the folder of joined pretrained weights (kept between runs, as the stage's is)."""
    frame = repeated_segments(paths, copies * len(paths))
    factory = partial(extractor_cls, config, weights_root=weights) if weights else partial(extractor_cls, config)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        extract_utterances(frame, factory, config_cls.__name__, asdict(config), cache,
                           workers=workers, progress=False, scheduler=scheduler)
        return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--workers", type=int, default=2, help="the stages' default (params.yaml)")
    parser.add_argument("--detect-every", type=int, default=VisualConfig.detect_every,
                        help="visual.detect_every for the 'all' figure (default: the stage's)")
    parser.add_argument("--copies", type=int, default=16,
                        help="segments per clip through the stages ('all'): 16 x the clips is about 8 min of media")
    args = parser.parse_args()
    paths = clips(Path(args.data))
    seconds = sum(probe(p).duration for p in paths)
    print(f"{len(paths)} real clips, {seconds:.1f} s of media", flush=True)
    visual, audio = VisualConfig(), AudioConfig()
    reference_only = VisualExtractor(visual).reference_only
    floor, _ = timed(lambda p: load_frames(p, visual.fps, max_side=visual.max_side, reference_only=reference_only),
                     paths)
    shortest = min(paths, key=lambda p: probe(p).duration)
    t_audio, _ = timed(AudioExtractor(audio).extract, paths, shortest)
    weights = Path(tempfile.mkdtemp(prefix="weights"))   # Whisper's parts joined once, outside the timing
    whisper = replace(audio, backbone="whisper")
    t_whisper, _ = timed(AudioExtractor(whisper, weights_root=weights).extract, paths, shortest)
    t_visual, results = timed(VisualExtractor(visual).extract, paths, shortest)
    variants = {"decode_all": replace(visual, decode="all"),
                "cascade": replace(visual, detector="cascade"),
                "cascade_240": replace(visual, detector="cascade", detect_side=240),
                "every_1": replace(visual, detect_every=1),
                "every_3": replace(visual, detect_every=3),
                "landmarks": replace(visual, backbone="landmarks"),
                "expression": replace(visual, backbone="expression"),
                "active": replace(visual, speaker="active")}
    sides = {name: timed(VisualExtractor(config).extract, paths, shortest) for name, config in variants.items()}
    from extractors.text import tokenize   # here, not above: worker processes import this module, and torch is slow
    words = ["so", "what", "do", "you", "think", "about", "the", "plan", "for", "tonight"]
    t_text, _ = timed(lambda p: tokenize(" ".join(words)), paths)   # tokenising; the CNN runs per batch below
    try:
        from pipeline.parts import load_part

        part = load_part("data/models/text.pt")
        start = time.perf_counter()
        part.transform([" ".join(words)] * len(paths))
        t_text += time.perf_counter() - start
    except Exception as exc:  # no demo run here: the text time is the tokens' alone
        print(f"text part not loaded ({exc}); text time counts tokenising only")
    startup = {"audio": round(through_cache([shortest], AudioConfig, AudioExtractor, audio, args.workers), 2),
               "visual": round(through_cache([shortest], VisualConfig, VisualExtractor, visual, args.workers), 2)}
    t_all = (through_cache(paths, AudioConfig, AudioExtractor, audio, args.workers, copies=args.copies)
             + through_cache(paths, VisualConfig, VisualExtractor, replace(visual, detect_every=args.detect_every),
                             args.workers, copies=args.copies)
             + t_text * args.copies) / args.copies
    dask = {}
    try:
        from distributed import LocalCluster

        # Each worker builds its extractor on its first clip (warm: every worker gets one), then
        # --copies segments of every clip, as "all": with 2 copies (before 2026-12-07) the whole
        # run took about 2 s, and the client's connection and the scheduler's start-up hid the workers
        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                through_cache(paths, AudioConfig, AudioExtractor, audio, 1, cluster.scheduler_address)
                wall = through_cache(paths, AudioConfig, AudioExtractor, audio, 1, cluster.scheduler_address,
                                     copies=args.copies)
                dask[str(n)] = round(args.copies * seconds / wall, 1)
        dask["speedup"] = round(dask["2"] / dask["1"], 2)
    except ImportError:
        print("distributed is not installed: no Dask figures")
    face = {"default": [int(r.info["face_frames"]) for r in results],
            **{name: [int(r.info["face_frames"]) for r in found] for name, (_, found) in sides.items()},
            "frames": [int(r.info["frames"]) for r in results]}
    t_whisper_stage = through_cache(paths, AudioConfig, AudioExtractor, whisper, args.workers, copies=args.copies,
                                    weights=weights) / args.copies
    out = {"rtf": {"text": round(seconds / max(t_text, 1e-9), 1), "audio": round(seconds / t_audio, 1),
                   "audio_whisper": round(seconds / t_whisper, 1),
                   "audio_whisper_stage": round(seconds / t_whisper_stage, 1),
                   "visual": round(seconds / t_visual, 1),
                   **{f"visual_{name}": round(seconds / t, 1) for name, (t, _) in sides.items()},
                   "all": round(seconds / t_all, 1),
                   # as a corpus of thousands of clips sees it: each stage's start-up paid once, not once per --copies
                   "all_steady": round(seconds / (t_all - sum(startup.values()) / args.copies), 1)},
           "floor_rtf": round(seconds / floor, 1), "workers": args.workers, "all_detect_every": args.detect_every,
           "all_copies": args.copies, "startup_s": startup,
           "box_iou_vs_every_frame": {f"every_{n}": box_agreement(paths, replace(visual, detect_every=n))
                                      for n in sorted({visual.detect_every, 3} - {1})},
           "dask": dask,
           "clips": [p.name for p in paths], "media_seconds": round(seconds, 1), "face_frames": face}
    for key, value in out["rtf"].items():
        print(f"{key:>18}: {value:6.1f}x real time")
    print(f"{'decode floor':>18}: {out['floor_rtf']:6.1f}x   dask (audio) {dask}   stage start-up {startup} s")
    last_line(out)
