"""Label a new conversation with a trained run, without retraining anything.

A run is the folder of trained parts the pipeline writes (``data/models``, names in
``pipeline.artifacts.RUN_FILES``): one fitted part per modality and the model, each with its
``.meta.json`` record. The conversation is a folder of clips plus a CSV with ``turn``,
``speaker``, ``text`` and ``media`` (and optional ``utterance_id``, ``start``, ``end``).
Feature settings that differ from the run's are refused: features made another way would not
mean what the model learned. Loading the run executes no code from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from model.train import load_checkpoint, pick_device, predict_probs
from pipeline.artifacts import PATHS, RUN_FILES, atomic_write, check_writable, run_file
from pipeline.parts import load_part
from pipeline.errors import PipelineError
from pipeline.lineage import demo_trained, read_record, record_path, write_record
from pipeline.manifest import ManifestError, read_csv_any_encoding, validate
from pipeline.params import configs, load_params, params_file
from pipeline.report import write_page
from pipeline.transcripts import heard_subtitles
from extractors.registry import media_extractor
from pipeline.stages.media import MediaStage, extract_raw
from pipeline.stages.text import text_inputs
from pipeline.store import part_features, store_columns
from pipeline.stages.ship import CLASS_ORDER, HEAD_FILE, SHIPPED


class PredictError(PipelineError):
    pass


def read_conversation(folder, csv) -> pd.DataFrame:
    """The conversation as manifest rows (split ``test``, no labels), checked like a manifest."""
    folder, csv = Path(folder), Path(csv)
    frame = read_csv_any_encoding(csv)
    missing = [c for c in ("speaker", "media") if c not in frame.columns]
    if missing:
        raise ManifestError(f"{csv}: missing column(s) {missing}; need turn, speaker, text, media")
    if "turn" not in frame.columns:
        frame["turn"] = [str(i) for i in range(len(frame))]
    for column in ("text", "start", "end"):
        if column not in frame.columns:
            frame[column] = ""
    if "utterance_id" not in frame.columns:   # the clip's name, made unique where one clip gives several
        stems = pd.Series([Path(m).stem for m in frame["media"]])
        frame["utterance_id"] = np.where(stems.duplicated(keep=False), stems + "_" + frame["turn"].astype(str), stems)
    dialogues = frame["dialogue_id"].astype(str).nunique() if "dialogue_id" in frame.columns else 1
    if dialogues > 1:
        raise ManifestError(f"{csv}: holds {dialogues} dialogues; predict reads one "
                            f"conversation per CSV (each would read the others as its context): give one CSV each")
    frame["media"] = [str(folder / m) if m else "" for m in frame["media"]]
    frame["dataset"], frame["dialogue_id"], frame["split"], frame["label"] = "conversation", "conversation", "test", ""
    for index, turn in frame["turn"].items():
        if not str(turn).strip().lstrip("-").isdigit():
            raise ManifestError(f"{csv}: line {index + 2}: turn {turn!r} is not an integer")
    return validate(frame, csv)


TEXT_FEATURE_KEYS = ("backbone", "encoder", "vectors", "finetune", "max_tokens", "context_turns")


def feature_settings(modality: str, section: dict, extractor: dict | None = None) -> dict:
    """Every setting that shapes a modality's features, defaults filled in (not how its part was
    trained): the text backbone's inputs; a media extractor's cache fields (the settings its
    backbone reads, as ``cache_params`` keys its entries) and the reduction. ``section`` is
    checked strictly, as its stage would; ``extractor``: a run's recorded, complete config."""
    from dataclasses import asdict

    from pipeline.stages import text
    from pipeline.stages.media import cache_params, stage_configs

    if modality == "text":
        merged = {k: v for config in configs("text", section, *text.CONFIGS) for k, v in asdict(config).items()}
        return {k: merged[k] for k in TEXT_FEATURE_KEYS if k in merged}
    config, stage, _, _ = stage_configs(modality, section)
    if extractor is not None:
        config = configs(modality, extractor, media_extractor(modality)[0])
    return {**cache_params(media_extractor(modality)[1], config), "backbone": config.backbone, "dim": stage.dim,
            "reduction": stage.reduction}


def check_settings(run: Path, params: dict, modalities) -> None:
    """Refuse when this conversation's feature settings (``params``) differ from the run's, both
    complete (a run that left a key to its default is compared on that default). Training-only
    settings (epochs, patience, learning rates) and settings the run's backbone never reads may
    differ: the run's fitted parts are used as they are."""
    problems = []
    for modality in modalities:
        artifact = run_file(run, modality)
        if not record_path(artifact).is_file():
            raise PredictError(f"{record_path(artifact)}: the run's record of its {modality} part is missing")
        record = read_record(artifact)
        recorded = feature_settings(modality, record["params"], record.get("extractor"))
        current = feature_settings(modality, params.get(modality) or {})
        differ = sorted(k for k in set(recorded) | set(current) if current.get(k) != recorded.get(k))
        if "backbone" in differ:   # another backbone: its own settings are beside the point
            differ = ["backbone"]
        problems += [f"{modality}.{k} is {current.get(k)!r} here but {recorded.get(k)!r} in the run" for k in differ]
    if problems:
        raise PredictError("feature settings differ from the trained run's, so its model cannot read these "
                           "features: " + "; ".join(problems) + ". Use the run's params, or retrain (dvc repro).")


def featurise(conversation: pd.DataFrame, run: Path, modalities, dims: dict, classes, cache_root,
              workers: dict | None = None) -> dict:
    """The conversation as a store, each modality through the run's fitted part (as its stage did);
    ``workers``: processes per media modality (a long recording's clips in parallel)."""
    store = store_columns(conversation, classes)
    for modality in modalities:
        part = load_part(run_file(run, modality))
        if part.out_dim != dims[modality]:
            raise PredictError(f"{run_file(run, modality)}: gives {part.out_dim}-d {modality} features but the "
                               f"model reads {dims[modality]}-d: the part comes from another run")
        if modality == "text":
            texts, present = text_inputs(conversation, getattr(getattr(part, "config", None), "context_turns", 0))
            inputs = [texts[i] for i in np.flatnonzero(present)]
            reasons = np.where(present, "", "empty_text")
        else:
            record = read_record(run_file(run, modality))
            config = configs(modality, record["extractor"], media_extractor(modality)[0])
            inputs, present, reasons, _, _ = extract_raw(modality, conversation, config, cache_root,
                                                         (workers or {}).get(modality, 1),
                                                         progress=False)
        store[modality], store[f"{modality}_present"] = part_features(part, inputs, present), present
        store[f"{modality}_missing"] = reasons
    return store


def subtitled_conversation(video, subtitles) -> pd.DataFrame:
    """A recording and its subtitles as the conversation's rows (one utterance per cue)."""
    from pipeline.subtitles import conversation

    if not Path(video).is_file():
        raise PredictError(f"{video}: video not found")
    frame, counts = conversation(video, subtitles)
    if counts:
        print(f"predict: {subtitles}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))
    return validate(frame, subtitles)


def predict_conversation(run, conversation: pd.DataFrame, params: dict, cache_root="data/cache"):
    """(per-utterance table, the conversation's store, the model, its checkpoint blob)."""
    run = Path(run)
    if not run.is_dir():
        raise PredictError(f"{run}: run folder not found (it holds {sorted(RUN_FILES.values())})")
    device = pick_device("auto")
    model, blob = load_checkpoint(run_file(run, "model"), device)
    check_settings(run, params, model.modalities)
    workers = {m: configs(m, {"workers": (params.get(m) or {}).get("workers", 1)}, MediaStage).workers
               for m in model.modalities if m != "text"}   # checked like the stage's own value
    store = featurise(conversation, run, model.modalities, blob["dims"], blob["classes"], cache_root, workers)
    rows, probs = predict_probs(model, store, np.ones(len(conversation), bool), device)
    order = np.argsort(rows)
    rows, probs = rows[order], probs[order]
    classes = blob["classes"]
    columns = ["utterance_id", "turn", "start", "end", "speaker", "text"]
    out = conversation.loc[rows, columns].reset_index(drop=True)
    out["predicted"] = [classes[i] for i in probs.argmax(1)]
    out["probability"] = probs.max(1).round(4)
    for j, name in enumerate(classes):
        out[f"p_{name}"] = probs[:, j].round(4)
    for modality in model.modalities:
        out[f"{modality}_present"] = store[f"{modality}_present"][rows]
    return out, store, model, blob


def conversation_page(store: dict, model, blob: dict, title: str, table: pd.DataFrame, warning: str = "",
                      overlaps: dict | None = None) -> str:
    """A new conversation's page: first its timeline (a lane per speaker, each turn coloured by
    its predicted emotion, its words on hover), then the report's dialogue view with attention."""
    from model.explain import explain
    from pipeline.report import build_page, dialogue_browser, timeline

    explained = explain(model, store, np.ones(len(store["label"]), bool), next(model.parameters()).device)
    browser = dialogue_browser(explained, store, list(blob["classes"]))
    sections = []
    timed = table[table[["start", "end"]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)]
    if len(timed):
        sections.append(("Timeline", "<p>One lane per speaker; each turn is coloured by its predicted emotion. Hover "
                                     "over a turn for its time, emotion and words.</p>"
                         + timeline(timed.to_dict("records"), list(blob["classes"]))))
    note = ("<p>Each utterance's predicted emotion and probability; the multiview attention of the first level (how "
            "much each modality weighed, per view) and the memory attention over the conversation's other "
            "utterances.</p>")
    sections += overlap_section(table, overlaps)
    return build_page("Emotions in a conversation", title, sections + [("Conversation", note + browser)], warning)


def overlap_section(table: pd.DataFrame, overlaps: dict | None) -> list[tuple[str, str]]:
    """Where two people talk at once (``extractors.speech.place_overlaps``): when, who, and
    which turns hold it. ``overlaps``: the stretches and a mark per turn; None where none were
    looked for (subtitles or a CSV gave the turns, or ``transcribe.overlaps: none``)."""
    from pipeline.report import _clock, esc

    if not overlaps:
        return []
    found = overlaps["regions"]
    where = ", ".join(f"{_clock(r['start'], tenths=True)}–{_clock(r['end'], tenths=True)} {_pair(r['speakers'])}"
                      for r in found) or "none"
    marked = sum(_marked(row, overlaps) for _, row in table.iterrows())
    seconds = sum(r["end"] - r["start"] for r in found)
    return [("Overlaps", f"<p>{len(found)} stretch(es) where two people talk at once ({seconds:.1f} s in all): "
                         f"{esc(where)}. {marked} of {len(table)} turns hold one, and where both speakers are "
                         f"known each one's turn is stretched over it (the timeline shows both). What is written there is one "
                         f"voice's words: the other's are missing. Found by pyannote's segmentation-3.0 network, "
                         f"trained on real conversations: {OVERLAPS_MEASURED}</p>")]


# bench/real_voices.py, held-out real voices (docs/results.md, 2026-12-07, seventh session)
OVERLAPS_MEASURED = ("on held-out recordings of real voices, 79 % of the stretches it found were overlaps, and it "
                     "found 74 % of the overlaps.")


SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) get a
    leading apostrophe: a transcript is data, never a formula."""
    safe = table.copy()
    for column in [c for c in ("speaker", "text", "utterance_id") if c in safe]:
        safe[column] = [f"'{v}" if isinstance(v, str) and v.startswith(SPREADSHEET_TRIGGERS) else v
                        for v in safe[column]]
    return safe


def output_paths(out) -> dict:
    """The CSV named by ``--out`` and the files beside it: the page, and what was heard."""
    out = Path(out)
    if out.suffix.lower() != ".csv" or out.is_dir():
        raise PredictError(f"{out}: --out names the CSV to write, e.g. talk.csv (the .html, and for a recording "
                           f"without subtitles the .srt and .vtt, are written beside it)")
    return {"csv": out, "html": out.with_suffix(".html"), "srt": out.with_suffix(".srt"), "vtt": out.with_suffix(".vtt")}


def transcribed_conversation(video, params: dict, cache_root) -> tuple[pd.DataFrame, object]:
    """A recording alone: its utterances, words and speakers from the transcription step."""
    from extractors.speech import overlaps_said
    from pipeline.transcripts import check_speech, conversation_rows, frame_of, transcribe

    video = Path(video)
    if not video.is_file():
        raise PredictError(f"{video}: video not found")
    result = transcribe([video], params.get("transcribe") or {}, cache_root, progress=False)[str(video)]
    check_speech(video, result)
    info = result.info
    print(f"predict: {video}: heard {len(info['utterances'])} utterances from {info['speakers']} speaker(s), "
          f"language {info['language']} ({info['language_probability']:.2f}), {overlaps_said(info)}")
    return validate(frame_of(conversation_rows(video, result, str(video))), video), result


def report_missing(store: dict, modalities) -> None:
    """Say on the console which utterances lacked a modality, and why (the CSV has the masks)."""
    for modality in modalities:
        reasons = [str(r) for r in store.get(f"{modality}_missing", []) if str(r)]
        if reasons:
            counts = pd.Series(reasons).value_counts().to_dict()
            print(f"predict: {modality} missing for {len(reasons)} of {len(store['label'])} utterances "
                  f"({', '.join(f'{k} {v}' for k, v in counts.items())}); the model read them without it")


DEMO_WARNING = ("This run was trained on the synthetic demo corpus (eSpeak voices, drawn faces): its emotions mean "
                "nothing for a real recording. Leave out --run to use the shipped model, trained on real "
                "conversations (MELD), with the face read by a network trained on real faces (FER2013).")


SHIPPED_COLUMNS = (["start", "end", "speaker", "text", "language", "predicted", "probability"]
                   + [f"{prefix}{c}" for prefix in ("p_", "text_p_", "face_p_") for c in CLASS_ORDER] + ["face"])


def on_demo_corpus(conversation: pd.DataFrame) -> bool:
    """Whether every clip of the conversation is one of the demo corpus's own."""
    demo = Path(PATHS["demo"]).resolve()
    media = [Path(m).resolve() for m in conversation["media"].fillna("").astype(str) if m]
    return bool(media) and all(m.is_relative_to(demo) for m in media)


def shipped_prediction(run_dir: Path, conversation: pd.DataFrame, params: dict, cache_root) -> tuple[pd.DataFrame, dict]:
    """The shipped model's table (columns: module text of ``pipeline.shipped``) and what its page shows."""
    from pipeline.shipped import combine, face_channel, load_shipped, text_channel
    from pipeline.stages.ship import CLASS_ORDER

    model = load_shipped(run_dir)
    text, text_present = text_channel(model, conversation, cache_root)
    workers = configs("visual", {"workers": (params.get("visual") or {}).get("workers", 1)}, MediaStage).workers
    face, face_present, infos, reasons = face_channel(conversation, cache_root, workers)
    probs = combine(text, text_present, face, face_present)
    classes = model.classes
    table = conversation[["utterance_id", "turn", "start", "end", "speaker", "text"]].reset_index(drop=True)
    table["language"] = ""
    known = ~np.isnan(probs).any(1)
    table["predicted"] = [classes[i] if ok else "" for i, ok in zip(np.nan_to_num(probs).argmax(1), known)]
    table["probability"] = np.where(known, np.nan_to_num(probs).max(1), np.nan).round(4)
    columns = {}
    for prefix, values, present in (("p_", probs, known), ("text_p_", text, text_present), ("face_p_", face, face_present)):
        for name in CLASS_ORDER:
            columns[f"{prefix}{name}"] = np.where(present, values[:, classes.index(name)], np.nan).round(4)
    table = pd.concat([table, pd.DataFrame(columns)], axis=1)
    table["face"] = [classes[i] if ok else "" for i, ok in zip(np.nan_to_num(face).argmax(1), face_present)]
    counts = {"text": int(text_present.sum()), "face": int(face_present.sum()), "turns": len(table)}
    print(f"predict: {model.describe()}")
    print(f"predict: words read for {counts['text']} of {counts['turns']} turns, a face for {counts['face']}; "
          f"the label combines both where both were read")
    missing = pd.Series([r for r in reasons if r]).value_counts().to_dict()
    if missing:
        print(f"predict: no face for {sum(missing.values())} of {counts['turns']} turns ("
              f"{', '.join(f'{k.replace(chr(95), chr(32))} {v}' for k, v in missing.items())}): their label is the words'")
    return table, {"model": model, "infos": infos, "counts": counts}


def media_link(row, page: Path) -> str:
    """The turn's recording at its time, relative to the page: ``talk.mp4#t=12.3,14.7`` (a media fragment)."""
    import os

    media = str(row.get("media") or "")
    if not media:
        return ""
    from urllib.parse import quote

    href = quote(Path(os.path.relpath(Path(media).resolve(), page.resolve().parent)).as_posix(), safe="/")
    start, end = pd.to_numeric(pd.Series([row.get("start"), row.get("end")]), errors="coerce")
    if pd.notna(start) and pd.notna(end):   # a media fragment: the player opens the turn, in tenths around it
        first, last = np.floor(start * 10 + 1e-6) / 10, np.ceil(end * 10 - 1e-6) / 10
        href += f"#t={first:.1f},{max(last, first + 0.1):.1f}"
    return href


def shipped_page(table: pd.DataFrame, conversation: pd.DataFrame, shown: dict, title: str, page: Path) -> str:
    """The shipped model's page: the model's line, the timeline (combined emotion per turn, the
    face's own in a thin lane beneath each speaker), then each turn with the face that was read,
    what the words and the face said, and a link that opens the recording at that time."""
    from pipeline.report import Html, build_page, esc, table as html_table, timeline

    rows, turns = [], []
    for i, row in table.iterrows():
        source = conversation.iloc[i]
        href = media_link(source, page)
        span = _span(row)
        words = max(CLASS_ORDER, key=lambda c: row[f"text_p_{c}"]) if pd.notna(row["text_p_neutral"]) else ""
        rows.append({
            "time": Html(f'<a href="{esc(href)}">{esc(span)}</a>') if href else span,
            "speaker": row["speaker"] + (" (overlap: two voices at once)" if _marked(row, shown.get("overlaps")) else ""),
            "face read": _thumbnail(row, shown["infos"][i]),
            "text": row["text"],
            "the words say": f"{words} {row[f'text_p_{words}']:.2f}" if words else "–",
            "the face says": f"{row['face']} {row['face_p_' + row['face']]:.2f}" if row["face"] else "–",
            "together": f"{row['predicted']} {row['probability']:.2f}" if row["predicted"] else "–"})
        times = pd.to_numeric(pd.Series([row["start"], row["end"]]), errors="coerce")
        if row["predicted"] and times.notna().all():
            turns.append({"speaker": row["speaker"], "start": float(times[0]), "end": float(times[1]),
                          "predicted": row["predicted"], "probability": row["probability"], "text": row["text"],
                          "face": row["face"], "href": href})
    sections = []
    if turns:
        sections.append(("Timeline", "<p>One lane per speaker; each turn is coloured by its emotion from the words and "
                                     "the face together; the thin lane beneath shows what the face alone said. Click a "
                                     "turn to open the recording there; hover for its words.</p>"
                         + timeline(turns, list(CLASS_ORDER))))
    sections += overlap_section(table, shown.get("overlaps"))
    sections.append(("Turns", "<p>Each turn: the face that was read (the speaking face, at the turn's middle), "
                              "what the words said in their context, what the face said, and the two together "
                              "(their product over the face network's training prior).</p>" + html_table(rows)))
    return build_page("Emotions in a conversation", title, sections, model_line=shown["model"].describe())


def _pair(speakers: list) -> str:
    """Who spoke in an overlap; "?" (``place_overlaps``): a voice that said no word Whisper wrote."""
    named = [str(s) for s in speakers if s != "?"]
    unknown = len(speakers) - len(named)
    return " and ".join(named + ["a voice with no words of its own"] * min(unknown, 1)) if unknown < 2 \
        else "two voices, neither with words of its own"


def _marked(row, overlaps: dict | None) -> bool:
    """Whether the turn holds an overlap (none: subtitles or a CSV gave the turns)."""
    marks = overlaps["marks"] if overlaps else []
    return int(row["turn"]) < len(marks) and marks[int(row["turn"])]


def _thumbnail(row, info: dict):
    """The face read for the turn (the extractor's picture) as a small inline JPEG, or "no face"."""
    import base64

    from pipeline.report import Html, jpeg

    picture = info.get("thumbnail") if row["face"] else None
    return jpeg(base64.b64decode(picture), f"face of turn {row['turn']}") if picture \
        else Html('<span class="muted">no face</span>')


def _span(row) -> str:
    from pipeline.report import _clock

    start, end = (pd.to_numeric(row[k], errors="coerce") for k in ("start", "end"))
    if pd.isna(start) or pd.isna(end):
        return f"turn {row['turn']}"
    return f"{_clock(float(start))}–{_clock(float(end))}"


def run(run_dir, out, params_path, cache_root, clips=None, csv=None, video=None, subtitles=None):
    if bool(clips) != bool(csv) or bool(video) == bool(clips) or (subtitles and not video):
        raise PredictError("give --clips and --csv (a folder of clips and its CSV), or --video (with --subtitles "
                           "where a transcript exists; without, the speech is transcribed)")
    paths = output_paths(out)
    if video and subtitles:   # what was heard is written only for a recording alone
        paths.pop("srt"), paths.pop("vtt")
    from pipeline.shipped import is_shipped

    default = not run_dir
    run_dir = Path(run_dir) if run_dir else SHIPPED
    shipped = is_shipped(run_dir)
    if default and not shipped:
        raise PredictError(f"{run_dir / HEAD_FILE}: the shipped model is missing (git checkout {run_dir}, or rebuild "
                           f"it: dvc repro data/shipped/dvc.yaml); or name a run of your own with --run")
    run_files = [run_dir / HEAD_FILE] if shipped else [run_file(run_dir, name) for name in RUN_FILES]
    inputs = [csv, video, subtitles, params_file(params_path), *run_files]
    check_writable(paths["csv"], unrecorded=[paths["html"]], owner=paths["csv"], stage="predict", inputs=inputs)
    subtitle_outputs = [p for k, p in paths.items() if k in ("srt", "vtt")]   # heard_subtitles keeps a person's own
    check_writable(unrecorded=subtitle_outputs, inputs=inputs)
    params = load_params(params_path)
    heard = None
    if video and not subtitles:
        conversation, heard = transcribed_conversation(video, params, cache_root)
    else:
        conversation = subtitled_conversation(video, subtitles) if video else read_conversation(clips, csv)
    warning = "" if shipped or not demo_trained(run_dir) or on_demo_corpus(conversation) else DEMO_WARNING
    if warning:
        print(f"predict: warning: {warning}")
    if shipped:
        table, shown = shipped_prediction(run_dir, conversation, params, cache_root)
    else:
        table, store, model, blob = predict_conversation(run_dir, conversation, params, cache_root)
    if heard is not None:
        if "language" in table:
            table["language"] = heard.info["language"]
        else:
            table.insert(table.columns.get_loc("text") + 1, "language", heard.info["language"])
    written_table = table[SHIPPED_COLUMNS] if shipped else table   # the shipped model's columns are fixed
    atomic_write(paths["csv"], lambda handle: spreadsheet_safe(written_table).to_csv(handle, index=False))
    write_record(paths["csv"], "predict", {"run": str(run_dir)},
                 inputs=[p for p in (csv, video, subtitles, *run_files) if p and Path(p).is_file()])
    written = [paths["csv"]]
    if heard is not None:
        written += [heard_subtitles(heard.info["utterances"], paths[k]) for k in ("srt", "vtt")]
    title = f"{video or csv} · run {run_dir}" + (f" · language {heard.info['language']}" if heard is not None else "")
    overlaps = None if heard is None or heard.info.get("overlaps") is None else {   # None: none looked for
        "marks": [bool(u.get("overlap")) for u in heard.info["utterances"]], "regions": heard.info["overlaps"]}
    if shipped:
        page = shipped_page(table, conversation, dict(shown, overlaps=overlaps), title, paths["html"])
    else:
        page = conversation_page(store, model, blob, title, table, warning, overlaps)
        report_missing(store, model.modalities)
    written.append(write_page(paths["html"], page))
    shown_columns = table[["turn", "start", "end", "speaker", "predicted", "probability"]
                          + (["face"] if shipped else [])]
    print(shown_columns.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"predict: {len(table)} utterances -> {', '.join(map(str, written))}")
    if warning:
        print(f"predict: warning: {warning}")
    return table
