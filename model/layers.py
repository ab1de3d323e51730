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


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (``decoupled_weight_decay=True``: AdamW), whose CPU step takes its
    square root alike on every x86-64 machine.

    Adam divides by ``sqrt(exp_avg_sq)``. torch's float32 ``sqrt`` is not correctly rounded on
    an AMD EPYC (38 of 4 million values 1 ulp off NumPy's), so the text CNN parted from the
    Intel Xeon's at its first step (``bench/numerics_trace.py``: the first operator whose bits
    differ was this ``aten.sqrt``). Here the root is taken in float64 and rounded to float32,
    which is correctly rounded (0 of those 4 million off). Everything else is torch's
    single-tensor step, with the same state (``step``, ``exp_avg``, ``exp_avg_sq``), so
    checkpoints load either way. torch's own step runs on a GPU; with ``amsgrad``, ``maximize``,
    ``capturable``, ``differentiable``, ``fused`` or a tensor ``lr``; and for complex parameters
    or sparse gradients (it refuses what it cannot do)."""

    @torch.no_grad()
    def step(self, closure=None):
        groups = self.param_groups
        if any(g["amsgrad"] or g["maximize"] or g["capturable"] or g["differentiable"] or g["fused"]
               or torch.is_tensor(g["lr"]) for g in groups) or \
                any(p.device.type != "cpu" or p.is_complex() or (p.grad is not None and p.grad.is_sparse)
                    for g in groups for p in g["params"]):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            for param in params:   # every state first, as torch's step makes them
                if not self.state[param]:
                    self.state[param].update(step=torch.tensor(0.0, dtype=torch.float32),
                                             exp_avg=torch.zeros_like(param, memory_format=torch.preserve_format),
                                             exp_avg_sq=torch.zeros_like(param, memory_format=torch.preserve_format))
            for param in params:
                grad, state = param.grad, self.state[param]
                state["step"] += 1
                if decay and group["decoupled_weight_decay"]:
                    param.mul_(1 - lr * decay)
                elif decay:
                    grad = grad.add(param, alpha=decay)
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = state["step"].item()
                root = state["exp_avg_sq"].to(torch.float64).sqrt().to(param.dtype)
                denom = (root / (1 - beta2 ** step) ** 0.5).add_(eps)
                param.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1 ** step))
        return loss


def AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, **options) -> Adam:  # noqa: N802
    """AdamW (torch's name and defaults): ``Adam`` with decoupled weight decay, as torch's is."""
    return Adam(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True, **options)


def portable_dropouts(module: nn.Module) -> nn.Module:
    """Every ``nn.Dropout`` inside ``module`` (a pretrained encoder, say) made a ``Dropout``, in place."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, Dropout(child.p))
        else:
            portable_dropouts(child)
    return module
