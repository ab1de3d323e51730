"""A MELD-sized corpus through an extraction stage's cache: time per clip and peak memory as the
corpus grows, and a killed run resumed.

    python bench/scale.py --modality audio --clips 10000 --kill-after 60

The corpus is the demo's clips (``data/demo``, made by ``dvc repro`` or ``python -m pipeline
demo``) repeated as distinct segments (each ends a millisecond earlier than the last), so every
row is its own cache entry. First a run in a child process is killed (SIGKILL, workers too)
after ``--kill-after`` seconds; then the whole corpus runs in chunks of ``--chunk`` rows, each
chunk timed, with the peak resident memory of this process and of its workers so far.
The last line is one JSON object: {"clips", "killed_run": {"seconds", "entries_written"},
"resumed": {"computed", "cached"}, "chunks": [{"rows", "computed", "seconds", "ms_per_clip",
"peak_rss_mb", "worker_peak_rss_mb"}], "redone": computed - (clips - entries_written)}.
"""
import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from common import last_line, repeated_segments  # first: it pins the CPU kernels before numpy loads
import pandas as pd

from extractors.registry import media_extractor
from pipeline.cache import extract_utterances


def corpus(manifest: Path, clips: int) -> pd.DataFrame:
    media = sorted(set(pd.read_csv(manifest)["media"]))
    base = Path(manifest).parent
    return repeated_segments([m if Path(m).is_absolute() or Path(m).is_file() else str(base / m) for m in media],
                             clips)


def run(frame, modality: str, cache: str, workers: int):
    config_cls, extractor_cls = media_extractor(modality)
    config = config_cls()
    return extract_utterances(frame, partial(extractor_cls, config), modality, asdict(config), cache,
                              workers=workers, progress=False)


def killed_run(cache: str, seconds: float) -> float:
    """This script on the whole corpus in a child (a session of its own, workers included),
    SIGKILLed after ``seconds``."""
    command = [sys.executable, __file__, *sys.argv[1:], "--only-run", cache]
    start = time.perf_counter()
    child = subprocess.Popen(command, start_new_session=True)
    try:
        child.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    return time.perf_counter() - start


class DescendantPeak(threading.Thread):
    """The largest resident memory (MB) any descendant process (pool workers, forkserver) had,
    sampled twice a second from /proc (workers are not our children, so getrusage misses them)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = 0.0, True

    def run(self):
        while self.running:
            self.peak = max([self.peak, *descendant_rss_mb().values()])
            time.sleep(0.5)


def descendant_rss_mb() -> dict[int, float]:
    parents, rss = {}, {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        pid = int(status.parent.name)
        parents[pid] = int(fields["PPid"])
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    mine, found = {os.getpid()}, {}
    for _ in range(4):   # forkserver -> worker is two levels down; a few passes catch every level
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                found[pid] = rss[pid]
    return found


def entries(cache: str) -> int:
    return sum(1 for _ in Path(cache).rglob("*.npz"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", default="audio", choices=["audio", "visual"])
    parser.add_argument("--clips", type=int, default=10000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-after", type=float, default=60.0)
    parser.add_argument("--manifest", default="data/demo/manifest.csv")
    parser.add_argument("--only-run", metavar="CACHE", help=argparse.SUPPRESS)   # the run that gets killed
    args = parser.parse_args()
    frame = corpus(Path(args.manifest), args.clips)
    if args.only_run:
        run(frame, args.modality, args.only_run, args.workers)
        sys.exit(0)
    with tempfile.TemporaryDirectory() as cache:
        killed = killed_run(cache, args.kill_after)
        written = entries(cache)
        print(f"killed after {killed:.0f}s with {written} entries written", flush=True)
        chunks, computed, cached = [], 0, 0
        workers_peak = DescendantPeak()
        workers_peak.start()
        for lo in range(0, len(frame), args.chunk):
            start = time.perf_counter()
            _, counts = run(frame.iloc[lo:lo + args.chunk], args.modality, cache, args.workers)
            seconds = time.perf_counter() - start
            computed, cached = computed + counts["computed"], cached + counts["cached"]
            chunks.append({"rows": lo + args.chunk, "computed": counts["computed"], "seconds": round(seconds, 1),
                           "ms_per_clip": round(1000 * seconds / counts["computed"], 1) if counts["computed"] else None,
                           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                           "worker_peak_rss_mb": round(workers_peak.peak, 1)})
            print(chunks[-1], flush=True)
    last_line({"modality": args.modality, "clips": args.clips, "workers": args.workers,
               "killed_run": {"seconds": round(killed, 1), "entries_written": written},
               "resumed": {"computed": computed, "cached": cached}, "chunks": chunks,
               "redone": computed - (args.clips - written)})
