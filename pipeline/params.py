"""Parameters: each stage reads its own section of ``params.yaml``, strictly.

A section becomes one or more dataclass configs. Everything is checked once, when the stage
starts and before any work or worker: the file must exist when named, every section name must
be known, a key no config knows is an error naming it, and every value is checked for its type
(from the config's annotations), its range (``LIMITS``, by key name) and its choices (a
config's ``CHOICES``). A value YAML 1.1 reads as a string but that is a number (``1e-3``) is
taken as the number the user meant.
"""
from __future__ import annotations

import functools
import math
import re
import types
import typing
from dataclasses import fields
from pathlib import Path

import yaml

from pipeline.errors import ParamsError, shown

DEFAULT = Path("params.yaml")
SECTIONS = ("demo", "ingest", "transcribe", "text", "audio", "visual", "export", "model", "train", "evaluate",
            "report", "ship")

MAX_PARALLEL = 256   # workers and threads (each stage also uses no more than its work and the cores need)
# (low, high, low_open, high_open) by key name; "section.key" overrides a name shared across sections
_POSITIVE_INT = (1, None, False, False)
_COUNT = (0, None, False, False)
_POSITIVE = (0, None, True, False)
_SHARE = (0, 1, False, True)
_PROBABILITY = (0, 1, False, False)
LIMITS = {
    **{key: _POSITIVE_INT for key in (
        "epochs", "batch_size", "workers", "dim", "d", "H", "K", "L", "R", "dialogues", "min_turns", "max_turns",
        "width", "height", "embedding_dim", "feature_maps", "out_dim", "mel_bins", "detect_every", "face_size",
        "min_face", "max_side", "max_len", "w2v_epochs", "cnn3d_epochs", "cnn3d_batch_size", "finetune_epochs",
        "finetune_batch_size", "encode_batch_size", "clip_frames", "clip_size", "sample_rate", "beam_size",
        "max_speakers", "cpu_threads", "hidden", "seeds")},
    **{key: _COUNT for key in (
        "patience", "seed", "holdout_seed", "window_size", "detect_side", "grad_clip", "weight_decay", "silence_rms",
        "finetune_patience", "cnn3d_patience", "folds", "cv_folds", "report.dialogues", "pixel_noise", "head_motion",
        "speakers", "min_silence_ms", "speech_pad_ms", "max_tokens", "context_turns")},
    **{key: _POSITIVE for key in ("lr", "finetune_lr", "cnn3d_lr", "fps", "active_fps", "max_utterance_s",
                                  "pause_s", "window_s")},
    # processes and threads: past the machine's cores they only compete (and each Whisper worker holds
    # a model: 64 of them on one recording gave nothing in 300 s; 4096 CTranslate2 threads never ended)
    **{key: (1, MAX_PARALLEL, False, False) for key in ("workers", "cpu_threads")},
    **{key: _SHARE for key in ("dropout", "holdout_share", "valid_share", "min_speaker_share")},
    # the TCN pads (K-1)·2^(L-1) steps: past these it runs out of memory (K 100, L 20 was killed)
    "audio.layer": (0, 32, False, False),   # 0: the last; the model's own depth is checked when it loads
    "K": (1, 64, False, False), "L": (1, 12, False, False), "H": (1, 32, False, False), "R": (1, 32, False, False),
    # layer sizes: d 1,000,000 asked torch for 4 TB
    **{key: (1, 4096, False, False) for key in ("d", "dim", "out_dim", "feature_maps", "embedding_dim")},
    "mel_bins": (1, 512, False, False), "max_len": (1, 10000, False, False),
    "ship.hidden": (2, 4096, False, False), "ship.seeds": (1, 100, False, False), "ship.dialogues": (0, None, False, False),
    "ship.max_tokens": (1, 512, False, False),
    **{key: _PROBABILITY for key in ("inertia", "contagion", "switch", "vad_threshold")},
    "speaker_distance": (0, 2, True, False),   # cosine distance
    "distinct_voice": (0, 1, False, False),    # a cosine similarity; 0: no brief speaker kept below the share
    "whisper_batch": (0, 64, False, False),    # stretches decoded at once; 0: one after another
    "face_x": (-1, 1, False, False),   # a share of the frame's width; -1: none
    # sampling a video faster than any video's frame rate only repeats frames (100000 never finished)
    "visual.fps": (0, 120, True, False), "visual.active_fps": (0, 120, True, False),
    "demo.fps": (1, 120, False, False),   # 100000 frames a second gave a traceback from the encoder
}
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# a Dask address the stages can reach: tls needs a security config and ucx a package they do not set up
SCHEDULER = re.compile(r"^tcp://([^\s/:\[\]]+|\[[0-9a-fA-F:.]+\]):\d{1,5}/?$")
FOLD_KEYS = ("folds", "cv_folds")   # K-fold settings: 0 is off, and one fold would fit on nothing held out


class _UniqueKeys(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key written twice in one mapping is an error: YAML keeps
    the last one without a word, so an edit above a forgotten duplicate would do nothing."""


def _unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {shown(key)} is written twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
# YAML 1.1 reads yes, no, on, off, y and n as booleans: `language: no` (Norwegian) became false, then
# "not a string". As in YAML 1.2, only true and false are booleans; the rest are the words written.
_BOOL = "tag:yaml.org,2002:bool"
_UniqueKeys.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
                                       for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_UniqueKeys.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

MAX_PARAMS_VALUES = 100_000   # a params file holds hundreds; YAML aliases of aliases can stand for billions


def expanded_size(value, limit: int) -> int:
    """How many values ``value`` holds once every shared reference in it is written out (a YAML
    alias, a pickle's memo: a few hundred bytes can stand for billions, and printing or walking
    them never ends), counted without expanding anything: each container once. Stops counting
    past ``limit`` (returns ``limit + 1``); a container that holds itself counts as past it."""
    containers = (list, tuple, dict, set, frozenset)
    children = lambda v: [*v.keys(), *v.values()] if isinstance(v, dict) else list(v)  # noqa: E731
    sizes, open_ = {}, set()   # open_: the containers on the path being walked
    stack = [(value, False)]
    while stack:
        item, closing = stack.pop()
        if not isinstance(item, containers):
            continue
        key = id(item)
        if closing:
            sizes[key] = min(limit + 1, 1 + sum(sizes.get(id(c), 1) for c in children(item)))
            open_.discard(key)
            if sizes[key] > limit:
                return limit + 1
        elif key in open_:
            return limit + 1
        elif key not in sizes:
            open_.add(key)
            stack.append((item, True))
            stack.extend((c, False) for c in children(item) if isinstance(c, containers) and id(c) not in sizes)
    return sizes.get(id(value), 1)


def load_params(path=None) -> dict:
    """The params file's sections. ``None``: ``params.yaml`` where there is one, else every
    default; a file named on purpose must exist."""
    if path is None:
        if not DEFAULT.is_file():
            return {}
        path = DEFAULT
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc   # one line
    if expanded_size(loaded, MAX_PARAMS_VALUES) > MAX_PARAMS_VALUES:
        raise ParamsError(f"{path}: expands to more than {MAX_PARAMS_VALUES:,} values (aliases repeating aliases); "
                          f"write the values out")
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path}: expected sections (a mapping), got {type(loaded).__name__}")
    unknown = sorted(str(k) for k in loaded if k not in SECTIONS)
    if unknown:
        raise ParamsError(f"{path}: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    return loaded


def params_file(path=None) -> Path | None:
    """The params file a command reads (an input of every command: no output may be written over it)."""
    if path is None:
        return DEFAULT if DEFAULT.is_file() else None
    return Path(path)


def section(name: str, path=None) -> dict:
    value = load_params(path).get(name) or {}
    if not isinstance(value, dict):
        raise ParamsError(f"{path or DEFAULT}: section {name!r} must be a mapping of keys, got {shown(value)}")
    return dict(value)


def _as_float(value):
    if isinstance(value, str):   # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _matches(value, kind) -> tuple[bool, object]:
    """(does ``value`` fit the annotation ``kind``, the value converted to it)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            ok, converted = _matches(value, option)
            if ok:
                return True, converted
        return False, value
    if kind is type(None):
        return value is None, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        value = _as_float(value)   # an int stays an int: configs (and cache keys) hold what was written
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), value
    if kind is str:
        return isinstance(value, str), value
    if kind in (tuple, list) or origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            return True, tuple(value) if (kind is tuple or origin is tuple) else list(value)
        return False, value
    if kind is dict or origin is dict:
        return isinstance(value, dict), value
    return True, value   # an annotation this checker does not model: the config's own checks decide


def _kind_name(kind) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_kind_name(k) for k in typing.get_args(kind))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
             tuple: "a list", list: "a list", dict: "a mapping"}
    return names.get(kind, names.get(typing.get_origin(kind), str(kind)))


def check_range(name: str, key: str, value) -> None:
    """The range ``LIMITS`` gives this key, and a device name for device keys."""
    if key == "device" or key.endswith("_device"):
        if not isinstance(value, str) or not DEVICE.match(value):
            raise ParamsError(f"params {name}.{key}: {shown(value)} is not a device; use auto, cpu, cuda or cuda:N")
        return
    if key == "scheduler" and value is not None:
        if not isinstance(value, str) or not SCHEDULER.match(value):
            raise ParamsError(f"params {name}.{key}: {shown(value)} is not a Dask scheduler address; use tcp://HOST:PORT")
        return
    if key in FOLD_KEYS and value == 1 and not isinstance(value, bool):
        raise ParamsError(f"params {name}.{key}: 1 fold is no cross-validation (nothing is held out); "
                          f"use 0 to turn it off, or 2 or more folds")
    limit = LIMITS.get(f"{name}.{key}", LIMITS.get(key))
    if limit is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high, low_open, high_open = limit
    if (low is not None and (value < low or (low_open and value == low))) or \
            (high is not None and (value > high or (high_open and value == high))):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ParamsError(f"params {name}.{key}: {shown(value)} is out of range (must be {' and '.join(filter(None, (lo, hi)))})")


def check_overrides(name: str, **values) -> None:
    """Command-line values that stand in for section ``name``'s keys, checked as the params are."""
    for key, value in values.items():
        if value is not None:
            try:
                check_range(name, key, value)
            except ParamsError as exc:   # said as the user wrote it
                raise ParamsError(str(exc).replace(f"params {name}.{key}", f"--{key} (as {name}.{key})")) from exc


_hints = functools.cache(typing.get_type_hints)   # a config's annotations, resolved once


def check_value(cls, name: str, key: str, value):
    """``value`` checked for ``cls``'s field ``key``: its type, range and choices; returns it converted."""
    kind = _hints(cls).get(key)
    if kind is not None:
        ok, value = _matches(value, kind)
        if not ok:
            raise ParamsError(f"params {name}.{key}: {shown(value)} is not {_kind_name(kind)}")
    check_range(name, key, value)
    choices = getattr(cls, "CHOICES", {}).get(key)
    if callable(choices) and not isinstance(choices, type):
        choices = choices()   # a registry filled after the class (e.g. visual.BACKBONES)
    if choices is not None:
        allowed = [c.value for c in choices] if isinstance(choices, type) else list(choices)
        if isinstance(value, str) and value not in allowed:
            raise ParamsError(f"params {name}.{key}: {shown(value)} is not one of {allowed}")
    return value


def _build(cls, values: dict, name: str):
    own = {key: check_value(cls, name, key, value) for key, value in values.items()}
    try:
        return cls(**own)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"params section {name!r}: {exc}") from exc


# Keys a params file of an earlier version may still hold: what became of them
REMOVED = {"no_pause_s": "removed on 2026-12-07; overlaps are found by a network now (transcribe.overlaps)"}


def configs(name: str, values: dict, *classes):
    """Split a params section among ``classes`` (each key to the first that has it); unknown keys
    are an error naming them, and every value is checked (``check_value``). Returns one instance
    per class."""
    taken, parts = set(), []
    for cls in classes:
        names = {f.name for f in fields(cls)} - taken
        parts.append({k: v for k, v in values.items() if k in names})
        taken |= names
    unknown = sorted(str(k) for k in set(values) - taken)
    if unknown:
        gone = "".join(f"; {k}: {REMOVED[k]}" for k in unknown if k in REMOVED)
        raise ParamsError(f"params section {name!r}: unknown key(s) {shown(unknown)}{gone}; known: {sorted(taken)}")
    built = [_build(cls, part, name) for cls, part in zip(classes, parts)]
    return built[0] if len(built) == 1 else tuple(built)
