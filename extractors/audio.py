"""Audio features (paper 3.1.2): the track at 16 kHz mono, then per utterance one backbone
(``BACKBONES``, by name): openSMILE functionals or a torchaudio log-mel summary
(``handcrafted``, the paper's), or Whisper's encoder states pooled (``whisper``,
``extractors.whisper_encoder``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from extractors.base import Result
from extractors.media import SAMPLE_RATE, load_audio


class AudioFeatureSet(str, Enum):
    ComParE_2016 = "ComParE_2016"
    eGeMAPSv02 = "eGeMAPSv02"
    emobase = "emobase"
    IS09 = "IS09"
    IS10 = "IS10"
    IS11 = "IS11"
    IS12 = "IS12"
    IS13 = "IS13"
    fbank = "fbank"   # torchaudio log-mel: mean, std, and delta std of each band


# The shortest signal (samples at 16 kHz) for which openSMILE 2.x gives finite functionals: below
# it every value is NaN (its longest analysis window). Measured per set with noise signals.
MIN_SAMPLES = {"ComParE_2016": 960, "eGeMAPSv02": 960, "emobase": 640, "IS09": 400, "IS10": 1120,
               "IS11": 1120, "IS12": 1120, "IS13": 960}
WHISPER_MIN_SAMPLES = 1600   # 0.1 s: ten log-mel frames, five encoder states


class AudioBackbone(str, Enum):
    handcrafted = "handcrafted"   # feature_set: openSMILE or fbank
    whisper = "whisper"           # Whisper's encoder (whisper_model, layer, pooling)


@dataclass(frozen=True)
class AudioConfig:
    backbone: str = "handcrafted"
    feature_set: str = "ComParE_2016"
    feature_level: str = "functionals"     # openSMILE level; functionals = one vector per utterance
    mel_bins: int = 40                     # fbank only
    silence_rms: float = 1e-4              # a track quieter than this counts as silent
    whisper_model: str = "base"            # whisper: the transcription stage's weights (base | tiny.en)
    layer: int = 0                         # whisper: the encoder block whose states are pooled (0: the last)
    pooling: str = "mean"                  # whisper: mean | mean_std over the utterance's frames

    WHISPER_ONLY = ("whisper_model", "layer", "pooling")
    HANDCRAFTED_ONLY = ("feature_set", "feature_level", "mel_bins")

    def cache_fields(self) -> dict:
        """The settings a clip's feature depends on: the other backbone's are left out, so that
        changing them re-extracts nothing (and handcrafted entries keep their keys from before
        ``backbone`` existed)."""
        fields = asdict(self)
        if self.backbone == AudioBackbone.handcrafted:
            drop = ("backbone",) + self.WHISPER_ONLY
        else:
            drop = self.HANDCRAFTED_ONLY
        return {k: v for k, v in fields.items() if k not in drop}

    CHOICES = {"backbone": AudioBackbone, "feature_set": AudioFeatureSet, "feature_level": ("functionals",),
               "whisper_model": ("base", "tiny.en"), "pooling": ("mean", "mean_std")}


class AudioExtractor:
    """One utterance's audio -> one vector. Raises MediaError subclasses for unreadable clips."""

    name = "audio"
    # 2: too-short and non-finite segments are reasons, not zeros (cache entries of 1 are stale);
    # 3: audio on the container's timeline (a track starting late was read from its first sample)
    version = 3
    needs_weights = True   # built with ``weights_root``: the cache's weights folder, shared with transcription

    def __init__(self, config: AudioConfig, weights_root=None):
        self.config = config
        self.backbone = AudioBackbone(config.backbone)
        self.feature_set = AudioFeatureSet(config.feature_set)
        self.smile = self.encoder = None
        if self.backbone is AudioBackbone.whisper:
            self.encoder = _whisper(config, weights_root)
        elif self.feature_set is not AudioFeatureSet.fbank:
            import opensmile

            level = {"functionals": opensmile.FeatureLevel.Functionals}[config.feature_level]
            self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.feature_set.value],
                                         feature_level=level)

    def extract(self, media, start=None, end=None) -> Result:
        signal = load_audio(media, start, end)
        rms = float(np.sqrt(np.mean(signal ** 2)))
        if rms < self.config.silence_rms:
            return Result(None, {"rms": rms}, "silent", f"{media}: audio track is silent (rms {rms:.1e})")
        info = {"rms": rms, "seconds": len(signal) / SAMPLE_RATE}
        if too_short := self._too_short(media, signal):
            return Result(None, info, "too_short", too_short)
        if self.encoder is not None:
            vector = self.encoder(signal)
        elif self.smile is not None:
            vector = self.smile.process_signal(signal, SAMPLE_RATE).to_numpy()[0]
        else:
            vector = self._fbank(signal)
        bad = int((~np.isfinite(vector)).sum())
        if bad:   # never zeros marked present
            return Result(None, info, "non_finite", f"{media}: {self._what} gave {bad} of {vector.size} "
                                                    f"values NaN or infinite")
        return Result(np.asarray(vector, np.float32), info)

    @property
    def _what(self) -> str:
        return f"Whisper {self.config.whisper_model}'s encoder" if self.encoder is not None else self.feature_set.value

    def _too_short(self, media, signal) -> str | None:
        """Why the segment is too short for the backbone, or None (fbank pads to one window)."""
        need = WHISPER_MIN_SAMPLES if self.encoder is not None else MIN_SAMPLES.get(self.feature_set.value, 0)
        if len(signal) >= need:
            return None
        return (f"{media}: segment of {1000 * len(signal) / SAMPLE_RATE:.0f} ms is too short for "
                f"{self._what} (needs {1000 * need / SAMPLE_RATE:.0f} ms)")

    def _fbank(self, signal):
        import torch
        import torchaudio

        wave = torch.from_numpy(signal)[None]
        if wave.shape[1] < 400:  # shorter than one 25 ms window
            wave = torch.nn.functional.pad(wave, (0, 400 - wave.shape[1]))
        feats = torchaudio.compliance.kaldi.fbank(wave * 32768, num_mel_bins=self.config.mel_bins,
                                                  sample_frequency=SAMPLE_RATE)
        delta = torchaudio.functional.compute_deltas(feats.T[None])[0].T
        return torch.cat([feats.mean(0), feats.std(0, unbiased=False), delta.std(0, unbiased=False)]).numpy()


def _whisper(config: AudioConfig, weights_root):
    from extractors.fit import pick_device
    from extractors.whisper_encoder import WhisperFeatures

    if weights_root is None:
        raise ValueError("audio.backbone whisper needs the cache's weights folder (weights_root), where the "
                         "transcription stage joins Whisper's weights")
    return WhisperFeatures(config.whisper_model, config.layer, config.pooling, Path(weights_root),
                           str(pick_device("auto")))
