"""``transcribe``: what was said in each recording, when and by whom, as JSON, SRT and WebVTT.

The same step ``ingest --format video`` and ``predict --video`` (without subtitles) run, with
the same cache: transcribing here first makes those instant. The SRT/VTT files can be corrected
by hand and given back with ``--subtitles``; run again, it keeps a corrected (or hand-made)
``<video>.srt`` and writes what was heard beside it as ``<video>.heard.srt``, as ``predict`` does.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.artifacts import atomic_write, check_writable
from pipeline.errors import PipelineError
from pipeline.lineage import write_record
from pipeline.params import check_overrides, params_file, section
from pipeline.subtitles import RECORDINGS, stem_clash, videos_in
from pipeline.transcripts import heard_subtitles, transcribe, transcribe_configs


def recordings(source) -> list[Path]:
    """One video, or every video in a folder."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise PipelineError(f"{source}: no such video or folder")
    videos = videos_in(source)
    if not videos:
        raise PipelineError(f"{source}: no {RECORDINGS} in the folder")
    clash = stem_clash(videos)
    if clash:   # else the second's JSON, SRT and VTT overwrite the first's
        first, second = clash
        raise PipelineError(f"{source}: {first.name} and {second.name} would both be written as "
                            f"{first.stem}.json/.srt/.vtt; rename one")
    return videos


def summary_line(video: Path, result) -> str:
    from extractors.speech import overlaps_said

    if result.vector is None:
        return f"{video.name}: {result.message or result.error}"
    info = result.info
    return (f"{video.name}: {len(info['utterances'])} utterances, {info['speakers']} speaker(s), language "
            f"{info['language']} ({info['language_probability']:.2f}), {overlaps_said(info)}, "
            f"{info['seconds']:.1f} s")


def run(source, out, params_path, cache_root, workers=None, scheduler=None):
    params = section("transcribe", params_path)
    transcribe_configs(params)   # every value checked before any work
    check_overrides("transcribe", workers=workers, scheduler=scheduler)
    videos = recordings(source)
    out = Path(out)
    # a hand-made or corrected <video>.srt/.vtt is kept (what was heard goes beside it, as predict does)
    check_writable(*(out / f"{v.stem}.json" for v in videos), folders=[out], stage="transcribe",
                   unrecorded=[out / f"{v.stem}{suffix}" for v in videos for suffix in (".srt", ".vtt")],
                   inputs=[*videos, params_file(params_path)])
    results = transcribe(videos, params, cache_root, workers, scheduler=scheduler)
    for video in videos:
        result = results[str(video)]
        record = dict(result.info, recording=str(video), error=result.error)
        written = atomic_write(out / f"{video.stem}.json",
                               lambda h: h.write((json.dumps(record, indent=1) + "\n").encode()))
        write_record(written, "transcribe", params, inputs=[video])
        if result.vector is not None:
            for suffix in (".srt", ".vtt"):
                heard_subtitles(result.info["utterances"], out / f"{video.stem}{suffix}", "transcribe")
        print(f"transcribe: {summary_line(video, result)}")
    found = sum(1 for v in videos if results[str(v)].vector is not None)
    print(f"transcribe: {found}/{len(videos)} recordings with speech -> {out}")
    if not found:
        raise PipelineError(f"{source}: no speech found in {'it' if len(videos) == 1 else f'any of its {len(videos)} videos'}")
    return results
