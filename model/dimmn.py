"""DIMMN: Dynamic Interactive Multiview Memory Network (paper sections 3.2-3.3).

A batch is a set of dialogues, padded to the longest: features per modality (B, T, d_m),
presence masks per modality (B, T), the utterance mask (B, T) and speaker indices (B, T)
(0..S-1 within each dialogue). The forward pass returns logits (B, T, C); padded positions
carry garbage and must be masked by the caller.

Ablations and baselines are configuration, not forks: ``fusion`` multiview | concat,
``views`` (Table 7), ``context`` tcn | gru (remove TCN), ``H``, ``K``, ``L``, ``R``, the memory
window, the modalities used, and ``mode`` dimmn | utterance | bclstm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from model.errors import ModelError
from model.layers import Dropout, GemmConv1d

LETTER = {"T": "text", "A": "audio", "V": "visual"}


@dataclass
class ModelConfig:
    mode: str = "dimmn"            # dimmn | utterance (no context) | bclstm (concat + BiGRU)
    modalities: list = field(default_factory=lambda: ["text", "audio", "visual"])
    d: int = 100                   # the unified size
    fusion: str = "multiview"      # multiview | concat ("remove multiview")
    views: str = "TA+VA"           # two views of two modalities: TA+VA, TV+AV, VT+AT (TA+AT with two)
    attention: str = "matrix"      # matrix (eq. 1-16 as written) | hadamard (per-dimension weights)
    H: int = 3                     # multiview levels
    context: str = "tcn"           # tcn | gru (per-speaker model; gru = "remove TCN")
    K: int = 6                     # TCN kernel
    L: int = 6                     # TCN residual blocks, dilation 2^i
    R: int = 3                     # memory hops
    window: str = "past"           # past (CMN/ICON) | all (the whole dialogue)
    window_size: int = 0           # past utterances the memory reads; 0 = all of them
    direction: str = "forward"     # forward (the paper: causal TCN, GRUs) | both (non-causal TCN, BiGRUs summed)
    dropout: float = 0.3

    # the values each choice takes (checked with every params value when a stage starts)
    CHOICES = {"mode": ("dimmn", "utterance", "bclstm"), "fusion": ("multiview", "concat"),
               "attention": ("matrix", "hadamard"), "context": ("tcn", "gru"), "window": ("past", "all"),
               "direction": ("forward", "both")}

    def __post_init__(self):
        sizes = {k: getattr(self, k) for k in ("d", "H", "K", "L", "R")}
        bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad or isinstance(self.window_size, bool) or not isinstance(self.window_size, int) or self.window_size < 0:
            # params check these first; a checkpoint's config comes here straight (H 0 was a traceback)
            raise ModelError(f"model sizes {bad or {'window_size': self.window_size}}: d, H, K, L and R are 1 or "
                             f"more, window_size 0 or more")
        known = list(LETTER.values())
        if not isinstance(self.modalities, (list, tuple)) or not self.modalities or \
                len(set(self.modalities)) != len(self.modalities) or any(m not in known for m in self.modalities):
            raise ModelError(f"model.modalities: {self.modalities!r}: give one or more of {known}, each once")
        self._parsed_views()   # its spelling checked when the stage starts, not after the store loads

    def view_pairs(self) -> list[tuple[str, str]]:
        pairs = self._parsed_views()
        missing = {m for pair in pairs for m in pair} - set(self.modalities)
        if missing:
            raise ModelError(f"model.views {self.views!r} use {sorted(missing)}, not among modalities {self.modalities}")
        return pairs

    def _parsed_views(self) -> list[tuple[str, str]]:
        pairs = []
        for view in str(self.views).upper().split("+"):
            if len(view) != 2 or any(c not in LETTER for c in view):
                raise ModelError(f"model.views: bad view {view!r} in {self.views!r}: use pairs of T, A, V like TA+VA")
            pairs.append((LETTER[view[0]], LETTER[view[1]]))
        if len(pairs) != 2:
            raise ModelError(f"model.views {self.views!r}: the multiview network takes exactly two views")
        return pairs


class ViewAttention(nn.Module):
    """One view's parameters W_g (d x d) and w_g (d), shared across levels (eq. 1-4, 9-12)."""

    def __init__(self, d: int, hadamard: bool):
        super().__init__()
        self.W = nn.Linear(d, d, bias=False)
        self.w = nn.Linear(d, d if hadamard else 1, bias=False)

    def forward(self, B: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """B (N, 2, d) -> attention over the two columns: (N, 2, 1), or (N, 2, d) for hadamard."""
        scores = self.w(torch.tanh(self.W(B)))
        if mask is not None:  # an absent modality gets no weight (both absent: uniform over zeros)
            blocked = ~mask.unsqueeze(-1)
            all_blocked = blocked.all(dim=1, keepdim=True)
            scores = scores.masked_fill(blocked & ~all_blocked, float("-inf"))
        return torch.softmax(scores, dim=1)


class MultiviewFusion(nn.Module):
    """H levels of two interacting views; U = tanh(W_f [F_1; F_2] + b_f) (eq. 17)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pairs, self.H = config.view_pairs(), config.H
        hadamard = config.attention == "hadamard"
        self.views = nn.ModuleList(ViewAttention(config.d, hadamard) for _ in self.pairs)
        self.out = nn.Linear(2 * config.d, config.d)
        self.last_attention: list[torch.Tensor] = []

    def forward(self, unified: dict, present: dict) -> torch.Tensor:
        B = [torch.stack([unified[a], unified[b]], dim=1) for a, b in self.pairs]        # (N, 2, d) each
        masks = [torch.stack([present[a], present[b]], dim=1) for a, b in self.pairs]     # (N, 2)
        self.last_attention = []
        for level in range(self.H):
            att = [view(b, m if level == 0 else None) for view, b, m in zip(self.views, B, masks)]
            self.last_attention.append(torch.stack([a.mean(-1) for a in att], dim=1))  # (N, 2 views, 2)
            F = [(a * b).sum(1) for a, b in zip(att, B)]                 # self view (eq. 5-6, 13-14)
            if level == self.H - 1:
                break                                                   # the last level needs no f
            f = [(att[1] * B[0]).sum(1), (att[0] * B[1]).sum(1)]        # guided by the other view (7-8, 15-16)
            B = [torch.stack([F[g], f[g]], dim=1) for g in range(2)]
        return torch.tanh(self.out(torch.cat(F, dim=-1)))


class ConcatFusion(nn.Module):
    """``remove multiview``: U = tanh(W [t; a; v] + b)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.modalities = config.modalities
        self.out = nn.Linear(len(self.modalities) * config.d, config.d)

    def forward(self, unified: dict, present: dict) -> torch.Tensor:
        return torch.tanh(self.out(torch.cat([unified[m] for m in self.modalities], dim=-1)))


class TCNBlock(nn.Module):
    """A TCN residual block: two dilated convolutions, causal (left padding only) or centred."""

    def __init__(self, d: int, kernel: int, dilation: int, dropout: float, causal: bool = True):
        super().__init__()
        total = (kernel - 1) * dilation
        self.pad = (total, 0) if causal else (total // 2, total - total // 2)
        self.conv1 = GemmConv1d(d, d, kernel, dilation=dilation)   # the same numbers on any CPU
        self.conv2 = GemmConv1d(d, d, kernel, dilation=dilation)
        self.drop = Dropout(dropout)

    def forward(self, x, keep):                    # x (N, d, T); keep (N, 1, T): 0 past each sequence's end
        y = self.drop(torch.relu(self.conv1(nn.functional.pad(x, self.pad)))) * keep   # padding stays zero, so
        y = self.drop(torch.relu(self.conv2(nn.functional.pad(y, self.pad)))) * keep   # a centred kernel reads
        return torch.relu(x + y) * keep                                                 # none of it


class DialogueGRU(nn.Module):
    """A GRU over each dialogue, packed so padding changes nothing; ``both`` sums the two
    directions (keeping size d), or concatenates them with ``concat``."""

    def __init__(self, d: int, direction: str, concat: bool = False):
        super().__init__()
        if direction not in ("forward", "both"):
            raise ModelError(f"unknown direction {direction!r}: forward | both")
        self.both, self.concat = direction == "both", concat
        self.gru = nn.GRU(d, d, batch_first=True, bidirectional=self.both)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        if self.both and not self.concat:
            d = x.shape[-1]
            out = out[..., :d] + out[..., d:]
        return out


class SpeakerContext(nn.Module):
    """Each speaker's utterances, in order, through a TCN (or a GRU): p_k = TCN(u_k)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.kind = config.context
        causal = config.direction != "both"
        if self.kind == "tcn":
            self.net = nn.ModuleList(TCNBlock(config.d, config.K, 2 ** i, config.dropout, causal)
                                     for i in range(config.L))
        elif self.kind == "gru":
            self.net = DialogueGRU(config.d, config.direction)
        else:
            raise ModelError(f"unknown context model {self.kind!r}: tcn | gru")

    def forward(self, U, speakers, mask):
        Bsz, T, d = U.shape
        spk = speakers.clamp(min=0)
        S = int(spk.max()) + 1 if spk.numel() else 1
        onehot = nn.functional.one_hot(spk, S) * mask.unsqueeze(-1)            # (B, T, S)
        rank = (onehot.cumsum(1) - 1).gather(2, spk.unsqueeze(-1)).squeeze(-1).clamp(min=0)  # place in own sequence
        per_speaker = U.new_zeros(Bsz, S, T, d)
        b = torch.arange(Bsz, device=U.device).unsqueeze(1).expand(Bsz, T)
        per_speaker = per_speaker.index_put((b[mask], spk[mask], rank[mask]), U[mask])
        flat = per_speaker.view(Bsz * S, T, d)
        counts = onehot.sum(1).reshape(Bsz * S)                      # each speaker's own length
        keep = torch.arange(T, device=U.device) < counts.unsqueeze(1)  # (B * S, T)
        if self.kind == "tcn":
            out, keep = flat.transpose(1, 2), keep.unsqueeze(1).to(flat.dtype)
            for block in self.net:
                out = block(out, keep)
            out = out.transpose(1, 2)
        else:
            out = self.net(flat, keep)
        return out.view(Bsz, S, T, d)[b, spk, rank]                           # back to dialogue order


class DIMMN(nn.Module):
    def __init__(self, config: ModelConfig, dims: dict, classes: int):
        super().__init__()
        self.config = config
        self.modalities = list(config.modalities)
        missing = set(self.modalities) - set(dims)
        if missing:
            raise ModelError(f"modalities {sorted(missing)} are not in the feature store ({sorted(dims)})")
        d = config.d
        self.unify = nn.ModuleDict({m: nn.Linear(dims[m], d) for m in self.modalities})
        for m in self.modalities:  # input standardisation, set from the training split (set_input_stats)
            self.register_buffer(f"mean_{m}", torch.zeros(dims[m]))
            self.register_buffer(f"std_{m}", torch.ones(dims[m]))
        if config.fusion == "multiview" and len(self.modalities) >= 2:
            self.fusion = MultiviewFusion(config)
        elif config.fusion in ("multiview", "concat"):
            self.fusion = ConcatFusion(config)
        else:
            raise ModelError(f"unknown fusion {config.fusion!r}: multiview | concat")
        self.drop = Dropout(config.dropout)
        if config.mode == "dimmn":
            self.speaker_context = SpeakerContext(config)
            self.global_gru = DialogueGRU(d, config.direction)
            if config.R > 1:   # the write after the last hop feeds nothing: R = 1 has no GRU_m
                self.memory_gru = DialogueGRU(d, config.direction)   # GRU_m, shared across hops
        elif config.mode == "bclstm":
            self.context_rnn = DialogueGRU(d, "both", concat=True)
            self.merge = nn.Linear(2 * d, d)
        elif config.mode != "utterance":
            raise ModelError(f"unknown mode {config.mode!r}: dimmn | utterance | bclstm")
        self.classifier = nn.Linear(d, classes)
        self.last_memory_attention: list[torch.Tensor] = []

    def set_input_stats(self, feats: dict) -> None:
        """Per-dimension mean and std of each modality's training features (present rows only)."""
        for m in self.modalities:
            x = torch.as_tensor(feats[m], dtype=torch.float32)
            getattr(self, f"mean_{m}").copy_(x.mean(0))
            getattr(self, f"std_{m}").copy_(x.std(0, unbiased=False).clamp(min=1e-6))

    def fuse(self, feats: dict, present: dict) -> torch.Tensor:
        """Per-utterance fused representation U (B, T, d); absent modalities are zeroed."""
        unified = {m: torch.tanh(self.unify[m]((feats[m] - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")))
                   * present[m].unsqueeze(-1) for m in self.modalities}
        shape = unified[self.modalities[0]].shape
        flat = {m: self.drop(u).reshape(-1, shape[-1]) for m, u in unified.items()}
        flat_present = {m: present[m].reshape(-1) for m in self.modalities}
        return self.fusion(flat, flat_present).view(shape)

    def memory_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, T_query, T_memory): which states each utterance reads."""
        T = mask.shape[1]
        idx = torch.arange(T, device=mask.device)
        allowed = mask.unsqueeze(1).expand(-1, T, -1)
        if self.config.window == "past":
            allowed = allowed & (idx.view(1, 1, T) < idx.view(1, T, 1))
            if self.config.window_size > 0:
                allowed = allowed & (idx.view(1, 1, T) >= idx.view(1, T, 1) - self.config.window_size)
        elif self.config.window != "all":
            raise ModelError(f"unknown memory window {self.config.window!r}: past | all")
        return allowed

    def forward(self, feats: dict, present: dict, mask: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        U = self.fuse(feats, present)
        if self.config.mode == "utterance":
            return self.classifier(self.drop(U))
        if self.config.mode == "bclstm":   # packed: the backward direction starts at each dialogue's own end
            context = self.context_rnn(U, mask)
            return self.classifier(self.drop(torch.tanh(self.merge(context))))
        p = self.speaker_context(U, speakers, mask)                  # per-speaker state (3.3.1)
        memory = self.global_gru(p, mask)                            # M = [s_1 .. s_k] (eq. 18-23)
        allowed = self.memory_mask(mask)
        reads = allowed.any(-1, keepdim=True)          # the first utterance has no past to read
        query = U
        self.last_memory_attention = []
        for hop in range(self.config.R):
            scores = torch.bmm(query, memory.transpose(1, 2)).masked_fill(~allowed, float("-inf"))
            att = torch.softmax(scores.masked_fill(~reads, 0.0), dim=-1) * reads
            self.last_memory_attention.append(att)
            query = torch.tanh(torch.bmm(att, memory) + query)          # eq. 24-26
            if hop < self.config.R - 1:
                memory = self.memory_gru(memory, mask)                  # write: M^(r+1) = GRU_m(M^(r))
        return self.classifier(self.drop(query))                        # eq. 27 (softmax in the loss)
