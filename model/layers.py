"""Layers whose CPU arithmetic is the same on every x86-64 machine (``pipeline.numerics``)."""
from __future__ import annotations

import torch
from torch import nn


class GemmConv1d(nn.Conv1d):
    """``nn.Conv1d``, computed on the CPU as one matrix product over the unfolded windows.

    The same parameters and the same result to rounding, and as fast at these sizes. Why: torch
    sends a float32 convolution on the CPU to oneDNN, which picks its kernel and blocking for the
    CPU it finds (AVX2, AVX-512), so a network trained on two machines parts after a few steps. A
    matrix product goes to MKL, which ``pipeline.numerics`` holds to one code path on every x86-64
    CPU. On a GPU, and for strides, groups or padding modes, it is the plain convolution."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias):
        if (x.device.type != "cpu" or self.stride != (1,) or self.groups != 1 or self.padding_mode != "zeros"
                or isinstance(self.padding, str)):
            return super()._conv_forward(x, weight, bias)
        (kernel,), (dilation,), (padding,) = self.kernel_size, self.dilation, self.padding
        if padding:
            x = nn.functional.pad(x, (padding, padding))
        windows = x.unfold(2, dilation * (kernel - 1) + 1, 1)[..., ::dilation]      # (N, C, T', k)
        n, channels, steps, _ = windows.shape
        flat = windows.permute(0, 2, 1, 3).reshape(n, steps, channels * kernel)
        out = flat @ weight.reshape(weight.shape[0], -1).T                            # (N, T', O)
        if bias is not None:
            out = out + bias
        return out.transpose(1, 2)


class Dropout(nn.Dropout):
    """``nn.Dropout``, with its CPU mask drawn alike on every x86-64 machine.

    torch draws a dropout mask with ``bernoulli_(p)``, which on Intel CPUs takes MKL's random
    streams and on every other CPU torch's own generator: the same seed gave an AMD EPYC other
    masks than an Intel Xeon, and the text CNN and DIMMN trained apart from the first step. Here
    the mask is ``rand_like(x) < 1 - p``, from torch's own generator on every CPU. Scaled by
    ``1 / (1 - p)`` as ``nn.Dropout`` is; the plain dropout on a GPU and in evaluation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        keep = 1.0 - self.p
        if keep == 0:
            return x * 0
        return x * (torch.rand_like(x) < keep) / keep


def portable_dropouts(module: nn.Module) -> nn.Module:
    """Every ``nn.Dropout`` inside ``module`` (a pretrained encoder, say) made a ``Dropout``, in place."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, Dropout(child.p))
        else:
            portable_dropouts(child)
    return module
