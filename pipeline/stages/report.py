"""``data/report/index.html``: the run on one offline page: params and lineage, data sizes,
coverage with the missing clips named, training curves, test metrics and confusion matrices,
and a dialogue browser with the model's multiview and memory attention."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from model.explain import explain
from model.train import check_store_fits, load_checkpoint, pick_device
from pipeline.artifacts import RUN_FILES, check_writable, features_path
from pipeline.errors import PipelineError
from pipeline.lineage import demo_trained, read_json_object, read_record, record_path, unreadable_file
from pipeline.params import configs, load_params, params_file, section
from pipeline.report import Html, build_page, dialogue_browser, esc, figure, image, table, write_page
from pipeline.store import MODALITIES, load_store, read_npz

STAGES = ("ingest", "text", "audio", "visual", "model", "train", "evaluate")


@dataclass(frozen=True)
class ReportConfig:
    dialogues: int = 0    # test dialogues in the browser; 0: all


def run_section(params: dict, store: dict, records: dict) -> str:
    sizes = Counter(str(s) for s in store["split"])
    dialogues = {s: len(set(store["dialogue_id"][store["split"] == s])) for s in sizes}
    size_rows = [{"split": s, "utterances": sizes[s], "dialogues": dialogues[s]} for s in ("train", "valid", "test")
                 if s in sizes]
    param_rows = [{"section": name, "settings": ", ".join(f"{k}={v}" for k, v in params[name].items())}
                  for name in STAGES if params.get(name)]
    lineage = [{"artifact": name, "stage": rec.get("stage", ""),
                "inputs": Html("<br>".join(f"<code>{esc(p)}</code> {esc(h[:12])}" for p, h in rec.get("inputs", {}).items())
                               or '<span class="muted">–</span>')} for name, rec in records.items()]
    return (f'<div class="card">{table(size_rows, numeric=("utterances", "dialogues"))}</div>'
            f'<div class="card">{table(param_rows)}</div><div class="card">{table(lineage)}</div>')


def coverage_section(store: dict, features_dir) -> str:
    rows, missing = [], []
    for m in MODALITIES:
        if f"{m}_present" not in store:
            continue
        present = store[f"{m}_present"]
        reasons = Counter()
        path = features_path(features_dir, m)
        if path.is_file():
            feats = read_npz(path)
            for uid, ok, reason in zip(feats["utterance_id"], feats["present"], feats["missing_reason"]):
                if not ok:
                    reasons[str(reason)] += 1
                    missing.append({"modality": m, "utterance": str(uid), "reason": str(reason)})
        rows.append({"modality": m, "present": int(present.sum()), "missing": int((~present).sum()),
                     "missing by reason": ", ".join(f"{k}: {v}" for k, v in reasons.items()) or "–"})
    named = table(missing[:200]) + (f'<p class="muted">… and {len(missing) - 200} more</p>' if len(missing) > 200 else "")
    return f'<div class="card">{table(rows, numeric=("present", "missing"))}</div>' \
           f'<details><summary>Missing clips, named ({len(missing)})</summary>{named}</details>'


HISTORY_COLUMNS = ("epoch", "loss", "valid_wf1", "train_acc")   # what the curves plot; valid_loss if there
METRICS_KEYS = ("acc", "wf1", "support", "per_class")


def read_history(path) -> pd.DataFrame:
    """train's per-epoch history as numbers; a missing column or a cell that is no number (empty
    is NaN: no valid loss that epoch) is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: training history {unreadable_file(path) or 'not found'}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: not a readable training history ({exc})") from exc
    missing = [c for c in HISTORY_COLUMNS if c not in table.columns]
    if missing or table.empty:
        raise PipelineError(f"{path}: not a training history (no {'rows' if not missing else missing}); "
                            f"it needs the columns {list(HISTORY_COLUMNS)}")
    history = pd.DataFrame(index=table.index)
    for column in [c for c in table.columns if c in HISTORY_COLUMNS or c == "valid_loss"]:
        text = table[column].str.strip()
        history[column] = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = table.index[history[column].isna() & (text != "")]
        if len(bad):
            raise PipelineError(f"{path}: line {bad[0] + 2}: {column} {table[column][bad[0]]!r} is not a number")
    return history


def read_metrics(path) -> dict:
    """evaluate's metrics.json, checked for what the page shows (numbers, per class acc/f1/support)."""
    metrics = read_json_object(path, "metrics file", METRICS_KEYS)
    numbers = [k for k in ("acc", "wf1", "support") if not isinstance(metrics[k], (int, float))]
    per_class = metrics["per_class"]
    if numbers or not isinstance(per_class, dict) or not all(
            isinstance(m, dict) and {"acc", "f1", "support"} <= set(m) for m in per_class.values()):
        raise PipelineError(f"{path}: malformed metrics ({numbers or 'per_class'}): {list(METRICS_KEYS)} are "
                            f"numbers, per_class maps each class to its acc, f1 and support")
    return metrics


def curves_section(history: pd.DataFrame, summary: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    axes[0].plot(history["epoch"], history["loss"], label="train loss")
    if "valid_loss" in history and history["valid_loss"].notna().any():
        axes[0].plot(history["epoch"], history["valid_loss"], label="valid loss")
    axes[1].plot(history["epoch"], history["valid_wf1"], label="valid weighted F1", color="#2f8f4e")
    axes[1].plot(history["epoch"], history["train_acc"], label="train accuracy", color="#999", ls="--")
    chosen = summary.get("selected_epoch")
    for ax in axes:
        if chosen is not None:
            ax.axvline(chosen, color="#b42318", ls=":", label=f"selected epoch {chosen}")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return f'<div class="card">{figure(fig, "training curves")}<p>{esc(summary.get("selection", ""))}; ' \
           f'{esc(summary.get("epochs_run"))} epochs on {esc(summary.get("device", ""))}</p></div>'


def metrics_section(metrics: dict, eval_dir) -> str:
    kpis = "".join(f'<span class="kpi">{name}<b>{metrics[key]:.1f}</b></span>'
                   for name, key in (("accuracy", "acc"), ("weighted F1", "wf1")))
    per_class = [{"class": c, "accuracy (recall)": m["acc"], "F1": m["f1"], "support": m["support"]}
                 for c, m in metrics["per_class"].items()]
    images = "".join(image((Path(eval_dir) / f"confusion_{n}.png").read_bytes(), f"confusion by {n}")
                     for n in ("recall", "precision") if (Path(eval_dir) / f"confusion_{n}.png").is_file())
    return (f'<div class="card">{kpis}<p class="muted">{metrics["support"]} {esc(metrics["split"])} utterances; '
            f'one training seed (the benchmarks in bench/ report the spread over seeds)</p>'
            f'{table(per_class, numeric=("accuracy (recall)", "F1", "support"))}</div><div class="grid">{images}</div>')


def attention_section(checkpoint, store: dict, rows_mask, limit=None, store_path="store") -> str:
    device = pick_device("auto")
    model, blob = load_checkpoint(checkpoint, device)
    check_store_fits(store, blob, store_path, checkpoint)
    explained = explain(model, store, rows_mask, device)
    note = ("<p>Multiview attention: for each view, how much each of its two modalities weighed at the last "
            "fusion level (each view's two weights sum to one). Memory attention (first hop): how much each "
            "utterance of the dialogue was read; the outlined cell is the utterance itself.</p>")
    return note + dialogue_browser(explained, store, list(blob["classes"]), limit)


def run(store_path, checkpoint, eval_dir, history_path, summary_path, features_dir, out, params_path):
    config = configs("report", section("report", params_path), ReportConfig)
    if Path(out).is_dir() or not Path(out).suffix:   # a folder: the page is its index.html
        out = Path(out) / "index.html"
    read = [store_path, checkpoint, history_path, summary_path, params_file(params_path), Path(eval_dir) / "metrics.json",
            *(Path(eval_dir) / f"confusion_{n}.png" for n in ("recall", "precision")),
            *(features_path(features_dir, m) for m in MODALITIES)]
    check_writable(unrecorded=[out], inputs=read)
    store = load_store(store_path)
    summary = read_json_object(summary_path, "training summary")
    for key in ("selected_epoch", "epochs_run"):   # drawn on the curves and written on the page
        value = summary.get(key, 0)
        if not isinstance(value, (int, type(None))) or isinstance(value, bool) or (value or 0) < 0:
            raise PipelineError(f"{summary_path}: {key} {summary[key]!r} is not an epoch number")
    metrics = read_metrics(Path(eval_dir) / "metrics.json")
    history = read_history(history_path)
    run_dir = Path(checkpoint).parent
    records = {name: read_record(run_dir / name) for name in RUN_FILES.values() if record_path(run_dir / name).is_file()}
    if record_path(store_path).is_file():
        records[Path(store_path).name] = read_record(store_path)
    split = metrics.get("split", "test")
    sections = [("Run", run_section(load_params(params_path), store, records)),
                ("Coverage", coverage_section(store, features_dir)),
                ("Training", curves_section(history, summary)),
                (f"Metrics on {split}", metrics_section(metrics, eval_dir)),
                (f"Dialogues of {split}", attention_section(checkpoint, store, store["split"] == split,
                                                            config.dialogues or None, store_path))]
    trained_on = ("trained and tested on the synthetic demo corpus (eSpeak voices, drawn faces): these figures show "
                  "the road works, not how well it reads real people" if demo_trained(run_dir) else "")
    page = build_page("DIMMN run report", f"store {store_path} · model {checkpoint}", sections, model_line=trained_on)
    write_page(out, page)
    print(f"report: {out} ({len(page) / 1e6:.2f} MB)")
    return out
