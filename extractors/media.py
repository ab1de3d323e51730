"""Decoding media files (any container PyAV/FFmpeg opens) into arrays.

Audio comes out as a mono float32 signal at a chosen rate (16 kHz by default), frames as
RGB uint8 arrays sampled at a chosen rate; both for a whole file or a [start, end] segment
in seconds. Problems raise a subclass of :class:`MediaError` naming the file, so callers can
count and report them instead of crashing.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from extractors.base import ExtractorError

SAMPLE_RATE = 16000


class MediaError(ExtractorError):
    """A clip that cannot give what was asked; ``reason`` is a short machine-readable tag."""

    reason = "media_error"

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class NoAudioStream(MediaError):
    reason = "no_audio"


class NoVideoStream(MediaError):
    reason = "no_video"


class CorruptMedia(MediaError):
    reason = "corrupt"


class SegmentOutOfRange(MediaError):
    """A segment that starts at or past the clip's end (never a feature from the last frame)."""
    reason = "out_of_range"


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float  # seconds, container duration (or longest stream)
    has_audio: bool
    has_video: bool
    sample_rate: int | None = None
    channels: int | None = None
    audio_codec: str | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, _not_a_file(path))
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise CorruptMedia(path, f"cannot be opened as media ({exc})") from exc


def _not_a_file(path: Path) -> str:
    """Why ``path`` is no file, in words: ``is_file()`` says False for a loop and a folder alike.
    (pipeline.lineage.unreadable_file says the same for the pipeline, which this library may not import.)"""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return "is a broken symbolic link (its target is missing)" if path.is_symlink() else "file not found"
    return "is not a file"


def probe(path) -> MediaInfo:
    """Stream layout and duration of a clip, without decoding it."""
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        return MediaInfo(
            path=str(path),
            duration=_duration(container),
            has_audio=audio is not None,
            has_video=video is not None,
            sample_rate=audio.codec_context.sample_rate if audio else None,
            channels=audio.codec_context.channels if audio else None,
            audio_codec=audio.codec_context.codec.canonical_name if audio else None,
            fps=float(video.average_rate) if video and video.average_rate else None,
            width=video.codec_context.width if video else None,
            height=video.codec_context.height if video else None,
            video_codec=video.codec_context.codec.canonical_name if video else None,
        )


def _duration(container) -> float:
    """Seconds: the container's duration or its longest stream's; 0.0 when neither is known."""
    duration = container.duration / av.time_base if container.duration else 0.0
    for stream in container.streams:
        if stream.duration and stream.time_base:
            duration = max(duration, float(stream.duration * stream.time_base))
    return duration


def _check_in_clip(container, path, start) -> None:
    duration = _duration(container)
    if start and duration and start >= duration:
        raise SegmentOutOfRange(path, f"segment start {start:.3f}s is past the end of the clip ({duration:.3f}s)")


def _check_segment(path, start, end):
    if start is not None and start < 0:
        raise MediaError(path, f"segment start {start} is negative")
    if start is not None and end is not None and end <= start:
        raise MediaError(path, f"segment end {end} is not after start {start}")


def _seek(container, stream, path, start):
    if start:
        try:
            container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            raise CorruptMedia(path, f"cannot seek to {start:.3f}s ({exc})") from exc


QUIET_MIX = 0.01   # RMS of a mono mix under which the channels are checked for cancelling (-40 dBFS)
CANCELLED = 4.0    # a channel this many times louder than the mix: the mix cancelled (lost > 90 % of it)


def _rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if signal.size else 0.0


def _decode_audio(path, start, end, sample_rate: int, layout: str | None):
    """(samples, the first frame's time, the track's channel count): ``layout`` mono gives one
    signal (as libswresample mixes it), None one signal per channel (channels, samples)."""
    with _open(path) as container:
        if not container.streams.audio:
            raise NoAudioStream(path, "has no audio track")
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels or 1
        _check_in_clip(container, path, start)
        _seek(container, stream, path, start)
        resampler = av.AudioResampler(format="fltp" if layout is None else "flt", layout=layout, rate=sample_rate)
        chunks, first_time = [], None
        try:
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = float(frame.time) if frame.time is not None else 0.0
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray() if layout is None else out.to_ndarray().reshape(-1))
                if end is not None and frame.time is not None and frame.time > end:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray() if layout is None else out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise CorruptMedia(path, f"audio cannot be decoded ({exc})") from exc
    if not chunks:
        raise CorruptMedia(path, "audio track holds no decodable samples")
    return np.concatenate(chunks, axis=-1).astype(np.float32), first_time, channels


def load_audio(path, start: float | None = None, end: float | None = None,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The clip's first audio track as mono float32 in [-1, 1] at ``sample_rate``, sample 0 at
    ``start`` on the container's timeline (0: the file's start, as video frames and subtitles count).

    ``start``/``end`` (seconds) cut a segment; ``None`` means the start/end of the file.
    """
    _check_segment(path, start, end)
    signal, first_time, channels = _decode_audio(path, start, end, sample_rate, "mono")
    if channels > 1 and _rms(signal) < QUIET_MIX:
        # Channels that cancel when mixed (one of them inverted) left "no speech found": where the
        # mix lost nearly all of the channels' energy, the louder channel is the signal.
        both, _, _ = _decode_audio(path, start, end, sample_rate, None)
        louder = both[int(np.argmax([_rms(c) for c in both]))]
        if _rms(louder) > CANCELLED * max(_rms(signal), 1e-9):
            signal = louder
    # Times are the container's: a track that starts after the time asked for (audio 2.94 s into
    # the video) is silence until it does. Counted from its first sample, every transcribed cue
    # came 2.9 s early and each utterance's audio was cut from the wrong speech.
    offset = first_time or 0.0
    lead = int(round((offset - (start or 0.0)) * sample_rate))
    if lead > 0:
        signal = np.concatenate([np.zeros(lead, np.float32), signal])
        offset -= lead / sample_rate
    # The decoder starts at a packet boundary at or before `start`: trim to the exact segment.
    lo = max(0, int(round(((start or 0.0) - offset) * sample_rate)))
    hi = len(signal) if end is None else max(lo, int(round((end - offset) * sample_rate)))
    signal = signal[lo:hi]
    if signal.size == 0:
        raise MediaError(path, f"segment [{start}, {end}] holds no audio")
    return np.clip(signal, -1.0, 1.0)


def load_frames(path, fps: float | None = None, start: float | None = None,
                end: float | None = None, max_side: int | None = None, reference_only: bool = False):
    """RGB frames (T, H, W, 3) uint8 and their times (T,) in seconds.

    ``fps`` samples the stream at that rate (the frame shown at each sampling time);
    ``None`` keeps every decoded frame. ``max_side`` downsizes large frames on decode.
    ``reference_only`` skips the frames no other frame is predicted from (B-frames: half of a
    MELD clip's frames), so a sampling time gets the last reference frame at or before it, at
    most a few frames early. Decoding is single-threaded: the stages run one clip per core, and
    a decoder's own threads only slow that down (a MELD clip: 0.29 s alone, 0.37 s threaded).
    """
    _check_segment(path, start, end)
    with _open(path) as container:
        if not container.streams.video:
            raise NoVideoStream(path, "has no video stream")
        stream = container.streams.video[0]
        if reference_only:
            stream.codec_context.skip_frame = "NONREF"
        _check_in_clip(container, path, start)
        _seek(container, stream, path, start)
        width, height = stream.codec_context.width, stream.codec_context.height
        scale = 1.0
        if max_side and max(width, height) > max_side:
            scale = max_side / max(width, height)
        size = (max(2, int(width * scale)) // 2 * 2, max(2, int(height * scale)) // 2 * 2)
        t0 = start or 0.0
        next_time = t0
        frames, times, previous = [], [], None
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                if end is not None and t >= end:
                    break
                if t < t0 - 1e-6:
                    previous = (t, frame)
                    continue
                if fps is None:
                    frames.append(_to_rgb(frame, size, scale))
                    times.append(t)
                    continue
                # Emit, for each sampling time up to this frame, the frame on screen then.
                while next_time <= t + 1e-6:
                    shown = frame if previous is None or abs(t - next_time) < 1e-6 else previous[1]
                    shown_time = t if shown is frame else previous[0]
                    frames.append(_to_rgb(shown, size, scale))
                    times.append(max(shown_time, t0))
                    next_time += 1.0 / fps
                previous = (t, frame)
            if fps is not None and previous is not None and not frames:
                frames.append(_to_rgb(previous[1], size, scale))
                times.append(previous[0])
        except av.FFmpegError as exc:
            raise CorruptMedia(path, f"video cannot be decoded ({exc})") from exc
    if not frames:
        raise CorruptMedia(path, f"no decodable video frame in [{start}, {end}]")
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def _to_rgb(frame, size, scale) -> np.ndarray:
    if scale != 1.0:
        return frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    return frame.to_ndarray(format="rgb24")


def write_clip(path, frames: np.ndarray | None, fps: int, audio: np.ndarray | None,
               sample_rate: int = SAMPLE_RATE, crf: int = 23, video_start: int = 0, audio_start: int = 0) -> None:
    """Encode RGB frames (T, H, W, 3) as H.264 and a mono float signal as AAC into ``path``.

    Either part may be ``None`` (a clip without audio, or audio only). Single-threaded and
    bit-exact, so the same arrays give the same bytes. ``video_start`` (frames) and
    ``audio_start`` (samples) start a stream later on the container's timeline, as recordings
    whose audio starts after the picture do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as out:
        video = audio_stream = None
        if frames is not None:
            # mbtree and lookahead made x264's output vary between processes: both off. No B-frames:
            # AVI has no presentation timestamps to reorder them by.
            video = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast", "threads": "1",
                                                                 "x264-params": "no-mbtree=1:rc-lookahead=0:bframes=0"})
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
        if audio is not None:
            audio_stream = out.add_stream("aac", rate=sample_rate, layout="mono", options={"flags": "+bitexact"})
        if video is not None:
            import cv2  # the encoder's colour conversion; decoding needs no OpenCV

            for index, image in enumerate(frames):
                yuv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420)
                frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                if video_start:   # else as before: the encoder numbers the frames from 0
                    frame.pts = video_start + index
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        if audio_stream is not None:
            block = 1024  # AAC frame size
            signal = np.asarray(audio, np.float32)
            for pts in range(0, len(signal), block):
                chunk = signal[pts:pts + block]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, audio_start + pts
                out.mux(audio_stream.encode(frame))
            out.mux(audio_stream.encode(None))
