"""Export the aligned feature store for other tools, and import stores made elsewhere.

Formats out: ``npz`` (the store itself), ``csv`` (one row per utterance), ``pickle`` (the
conv-emotion layout: videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual,
videoSentence, trainVid, testVid). Formats in: that pickle layout, read with a restricted
unpickler, and the CMU-MOSI CSV layout of the bc-LSTM data.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model.data import dialogues as dialogues_of
from pipeline.artifacts import atomic_write, check_writable
from pipeline.errors import PipelineError
from pipeline.labels import IEMOCAP_EMOTIONS, MELD_EMOTIONS, MELD_SENTIMENTS
from pipeline.lineage import write_record
from pipeline.params import configs, expanded_size, params_file, section
from pipeline.store import MODALITIES, check_store, load_store, save_store, write_npz

PICKLE_FIELDS = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "videoAudio", "videoVisual",
                 "videoSentence", "trainVid", "testVid")
PICKLE_MODALITY = {"text": "videoText", "audio": "videoAudio", "visual": "videoVisual"}


class ExchangeError(PipelineError):
    """A file that cannot be imported, naming it and the problem."""


def export_store(store: dict, out_dir, formats=("npz", "csv", "pickle"), source=None, layout: str = "auto") -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    if "sentence" not in store:
        store = dict(store, sentence=np.full(len(store["label"]), "", dtype=str))
    modalities = [m for m in MODALITIES if m in store]
    if "npz" in formats:
        written.append(write_npz(out_dir / "features.npz", store))
    if "csv" in formats:
        table = pd.DataFrame({k: store[k] for k in ("utterance_id", "dialogue_id", "turn", "speaker", "split", "sentence")})
        table["label"] = [store["classes"][i] if i >= 0 else "" for i in store["label"]]
        blocks = [table]
        for m in modalities:
            blocks.append(pd.DataFrame({f"{m}_present": store[f"{m}_present"]}))
            blocks.append(pd.DataFrame(store[m], columns=[f"{m}_{j}" for j in range(store[m].shape[1])]))
        table = pd.concat(blocks, axis=1)
        written.append(atomic_write(out_dir / "features.csv", lambda handle: table.to_csv(handle, index=False)))
    layout_info = None
    if "pickle" in formats:
        data, layout_info = conv_emotion_tuple(store, layout)
        written.append(atomic_write(out_dir / "features.pkl", lambda handle: pickle.dump(data, handle, protocol=4)))
    for path in written:
        extra = {"classes": [str(c) for c in store["classes"]]}
        if path.suffix == ".pkl":
            extra["pickle_layout"] = layout_info
        write_record(path, "export", {"formats": list(formats), "layout": layout}, inputs=[source] if source else [],
                     extra=extra)
    return written


# conv-emotion's loaders (DialogueRNN/dataloader.py): IEMOCAPDataset reads the 9-tuple below,
# speakers as 'M' (party 0) or anything else (party 1), labels hap, sad, neu, ang, exc, fru;
# MELDDataset reads (videoIDs, videoSpeakers as one-hot vectors, labels, videoText, videoAudio,
# videoSentence, trainVid, testVid, labels-it-trains-on) and has no visual field.
MELD_FIELDS = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "videoAudio", "videoSentence")


def choose_layout(store: dict, layout: str) -> str:
    if layout in ("iemocap", "meld"):
        return layout
    if layout != "auto":
        raise ExchangeError(f"export: unknown pickle layout {layout!r}; known: auto, iemocap, meld")
    classes = [str(c) for c in store["classes"]]
    return "meld" if classes in (MELD_EMOTIONS, MELD_SENTIMENTS) else "iemocap"


def conv_emotion_tuple(store: dict, layout: str = "auto") -> tuple[tuple, dict]:
    """The store as the tuple conv-emotion's loader for ``layout`` unpacks, and what was done
    to fit it (the record says so): speaker codes, label order, the split."""
    layout = choose_layout(store, layout)
    classes = [str(c) for c in store["classes"]]
    remap = list(range(len(classes)))
    label_order = classes
    if layout == "iemocap" and sorted(classes) == sorted(IEMOCAP_EMOTIONS):
        remap, label_order = [IEMOCAP_EMOTIONS.index(c) for c in classes], list(IEMOCAP_EMOTIONS)
    every = np.ones(len(store["label"]), bool)
    groups = {str(store["dialogue_id"][rows[0]]): rows for rows in dialogues_of(store, every)}
    widest = max(len(dict.fromkeys(store["speaker"][rows])) for rows in groups.values())
    fields = {name: {} for name in PICKLE_FIELDS[:7]}
    collapsed = 0
    for d, rows in groups.items():
        order = list(dict.fromkeys(str(store["speaker"][i]) for i in rows))   # by first appearance
        fields["videoIDs"][d] = [str(store["utterance_id"][i]) for i in rows]
        fields["videoLabels"][d] = [remap[int(store["label"][i])] if store["label"][i] >= 0 else -1 for i in rows]
        fields["videoSentence"][d] = [str(store["sentence"][i]) for i in rows]
        if layout == "iemocap":
            native = set(order) <= {"M", "F"}
            fields["videoSpeakers"][d] = [s if native else ("M" if order.index(s) == 0 else "F")
                                          for s in map(str, store["speaker"][rows])]
            collapsed += len(order) > 2
        else:
            fields["videoSpeakers"][d] = [np.eye(widest, dtype=np.float32)[order.index(str(store["speaker"][i]))].tolist()
                                          for i in rows]
        for m, name in PICKLE_MODALITY.items():
            if m in store:
                fields[name][d] = [store[m][i] * store[f"{m}_present"][i] for i in rows]
    split = {d: str(store["split"][rows[0]]) for d, rows in groups.items()}
    train = [d for d, s in split.items() if s in ("train", "valid")]  # the layouts have no valid split
    test = [d for d, s in split.items() if s == "test"]
    info = {"layout": layout, "label_order": label_order, "train": "train + valid dialogues", "test": "test dialogues"}
    if layout == "iemocap":
        data = tuple(fields[f] for f in PICKLE_FIELDS[:7]) + (train, test)
        info["speakers"] = "M/F as recorded" if all(set(v) <= {"M", "F"} for v in fields["videoSpeakers"].values()) \
            else "first speaker of each dialogue 'M' (party 0), the others 'F' (party 1)"
        info["dialogues_with_more_than_two_speakers"] = collapsed
    else:
        data = tuple(fields[f] for f in MELD_FIELDS) + (train, test, fields["videoLabels"])
        info["speakers"] = f"one-hot vectors of {widest}, by order of first appearance in the dialogue"
        info["fields"] = list(MELD_FIELDS) + ["trainVid", "testVid", "videoLabels (read as labels by MELDDataset)"]
    return data, info


class RefusedGlobal(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """Plain containers and numpy arrays only: anything else (a function, a class) is refused."""

    ALLOWED = {
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
        ("builtins", "frozenset"), ("builtins", "str"), ("builtins", "int"), ("builtins", "float"),
        ("builtins", "bool"), ("builtins", "bytes"), ("collections", "OrderedDict"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 2 pickles of numpy arrays carry their bytes
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise RefusedGlobal(f"refused {module}.{name}: only plain containers and numpy arrays are read")


def read_pickle_safely(path):
    if not Path(path).is_file():
        raise ExchangeError(f"{path}: file not found")
    data = Path(path).read_bytes()
    try:
        loaded = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise ExchangeError(f"{path}: {exc}") from exc
    except Exception as exc:  # truncated or not a pickle at all
        raise ExchangeError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    # Each value a pickle holds costs it at least a byte, or two where it repeats one already
    # written; one that holds far more refers to the same lists again and again (a 35 KB file that
    # stood for billions of values took 4 GB before its error): refused before anything walks it.
    limit = 2 * len(data) + 10_000
    if expanded_size(loaded, limit) > limit:
        raise ExchangeError(f"{path}: holds more than {limit:,} values through shared references in "
                            f"{len(data):,} bytes (or a list inside itself); not a feature pickle")
    return loaded


def import_pickle(path, classes=None) -> dict:
    """A conv-emotion layout pickle (IEMOCAP's or MELD's 9-tuple) into a store. Its dialogues are
    train or test; one-hot speakers become their index."""
    loaded = read_pickle_safely(path)
    if not isinstance(loaded, (tuple, list)) or len(loaded) < 9:
        raise ExchangeError(f"{path}: expected the conv-emotion 9-tuple {PICKLE_FIELDS}, "
                            f"got {type(loaded).__name__} of length {len(loaded) if hasattr(loaded, '__len__') else '?'}")
    if isinstance(loaded[6], (list, tuple, set)):   # MELD's layout: trainVid where IEMOCAP's has videoSentence
        fields = dict(zip(MELD_FIELDS, loaded[:6]), trainVid=loaded[6], testVid=loaded[7], videoLabels=loaded[8],
                      videoVisual={})
    else:
        fields = dict(zip(PICKLE_FIELDS, loaded[:9]))
    test = set(fields["testVid"])
    rows = {k: [] for k in ("utterance_id", "dialogue_id", "turn", "speaker", "split", "sentence", "label")}
    mats = {m: [] for m in MODALITIES}
    for d in list(fields["trainVid"]) + list(fields["testVid"]):
        try:
            _read_dialogue(fields, d, d in test, rows, mats)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ExchangeError(f"{path}: dialogue {d!r} does not fit the layout ({type(exc).__name__}: {exc}); "
                                f"each field needs one entry per utterance of videoIDs") from exc
    if not rows["label"]:
        raise ExchangeError(f"{path}: no dialogue listed in trainVid or testVid")
    n_classes = max(rows["label"]) + 1
    store = {k: np.asarray(v) for k, v in rows.items()}
    store["classes"] = np.asarray(classes or [f"class_{i}" for i in range(n_classes)], dtype=str)
    for m, vectors in mats.items():
        if all(v is None for v in vectors):
            continue
        dims = {v.shape for v in vectors if v is not None}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise ExchangeError(f"{path}: {PICKLE_MODALITY[m]} vectors have shapes {sorted(dims)}; need one 1-d size")
        dim = next(iter(dims))[0]
        matrix = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in vectors])
        bad = np.flatnonzero(~np.isfinite(matrix.astype(np.float64)).all(axis=1))
        if len(bad):   # an all-zero row is this layout's "absent"; NaN is damage, not absence
            raise ExchangeError(f"{path}: {len(bad)} {PICKLE_MODALITY[m]} vector(s) hold non-finite values "
                                f"(e.g. utterance {str(store['utterance_id'][bad[0]])!r})")
        store[m], store[f"{m}_present"] = matrix, np.abs(matrix).sum(1) > 0
    return store


def _read_dialogue(fields: dict, d, is_test: bool, rows: dict, mats: dict) -> None:
    ids = fields["videoIDs"][d]
    sentences = fields["videoSentence"].get(d) if isinstance(fields["videoSentence"], dict) else None
    for k, uid in enumerate(ids):
        speaker = fields["videoSpeakers"][d][k]
        label = int(fields["videoLabels"][d][k])
        vectors = {m: np.asarray(fields[name][d][k], np.float32)
                   if isinstance(fields[name], dict) and d in fields[name] else None for m, name in PICKLE_MODALITY.items()}
        rows["utterance_id"].append(str(uid))
        rows["dialogue_id"].append(str(d))
        rows["turn"].append(k)
        rows["speaker"].append(str(np.argmax(speaker)) if np.ndim(speaker) else str(speaker))
        rows["split"].append("test" if is_test else "train")
        rows["sentence"].append(str(sentences[k]) if sentences else "")
        rows["label"].append(label)
        for m, vector in vectors.items():
            mats[m].append(vector)


def import_mosi(folder) -> dict:
    """The CMU-MOSI CSV layout (bc-LSTM data): ``{text,audio,video}_{split}0.csv`` rows aligned,
    last column the label, ``text_{split}.csv`` column 0 indexing ``transcripts.csv``."""
    folder = Path(folder)
    if not (folder / "transcripts.csv").is_file():
        raise ExchangeError(f"{folder / 'transcripts.csv'}: not found; the MOSI layout needs it beside the feature CSVs")
    transcripts = pd.read_csv(folder / "transcripts.csv", header=None, dtype=str, keep_default_na=False)
    parts = []
    for split in ("train", "test"):
        try:
            text = pd.read_csv(folder / f"text_{split}0.csv", header=None).to_numpy(np.float32)
            audio = pd.read_csv(folder / f"audio_{split}0.csv", header=None).to_numpy(np.float32)
            video = pd.read_csv(folder / f"video_{split}0.csv", header=None).to_numpy(np.float32)
            index = pd.read_csv(folder / f"text_{split}.csv", header=None).iloc[:, 0].astype(int).to_numpy()
        except FileNotFoundError as exc:
            raise ExchangeError(f"{folder}: not the MOSI CSV layout ({exc.filename} missing)") from exc
        if not len(text) == len(audio) == len(video) == len(index):
            raise ExchangeError(f"{folder}: {split} files disagree on the number of rows")
        ids = transcripts.iloc[index, 0].to_numpy()
        video_ids = np.array([u.rsplit("_", 1)[0] for u in ids])
        turns = np.array([int(u.rsplit("_", 1)[1]) for u in ids])
        parts.append(pd.DataFrame({
            "utterance_id": ids, "dialogue_id": video_ids, "turn": turns, "speaker": video_ids, "split": split,
            "sentence": transcripts.iloc[index, 1].to_numpy(), "label": text[:, -1].astype(int),
            "t": list(text[:, :-1]), "a": list(audio[:, :-1]), "v": list(video[:, :-1])}))
    table = pd.concat(parts).sort_values(["dialogue_id", "turn"], kind="stable").reset_index(drop=True)
    store = {k: table[k].to_numpy() for k in ("utterance_id", "dialogue_id", "turn", "speaker", "split", "sentence", "label")}
    store = {k: np.asarray(v, dtype=str) if v.dtype == object else v for k, v in store.items()}
    store["classes"] = np.asarray(["negative", "positive"])
    for m, column in (("text", "t"), ("audio", "a"), ("visual", "v")):
        store[m] = np.stack(table[column].to_numpy()).astype(np.float32)
        store[f"{m}_present"] = np.ones(len(table), bool)
    return store


FORMATS = ("npz", "csv", "pickle")
EXPORT_SUFFIX = {"npz": "npz", "csv": "csv", "pickle": "pkl"}   # each format's file: features.<suffix>


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple = FORMATS
    layout: str = "auto"     # the pickle: iemocap | meld | auto (meld for MELD's label sets)

    CHOICES = {"layout": ("auto", "iemocap", "meld")}


def run_export(store_path, out, params_path, formats=None, layout=None):
    config = configs("export", section("export", params_path), ExportConfig)
    formats, layout = formats or config.formats, layout or config.layout
    if not formats:
        raise ExchangeError(f"params export.formats: {list(formats)!r} names no format, so nothing would be written; "
                            f"name one or more of {list(FORMATS)}")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExchangeError(f"export: unknown format(s) {unknown}; known: {list(FORMATS)}")
    check_writable(*(Path(out) / f"features.{EXPORT_SUFFIX[f]}" for f in formats), folders=[out],
                   inputs=[store_path, params_file(params_path)], stage="export")
    written = export_store(load_store(store_path), out, formats, source=store_path, layout=layout)
    for path in written:
        print(f"export: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return written


def run_import(fmt, src, out, classes=None):
    check_writable(out, inputs=[src], stage="import")
    store = import_pickle(src, classes) if fmt == "pickle" else import_mosi(src)
    check_store(store, src)   # named by the file it came from (a dialogue in trainVid and testVid: its ids twice)
    save_store(store, out, "import", {"format": fmt, "src": str(src)}, inputs=[src])
    mods = [m for m in MODALITIES if m in store]
    print(f"import: {len(store['utterance_id'])} utterances, {len(set(store['dialogue_id']))} dialogues, "
          f"modalities {mods} -> {out}")
    return store
