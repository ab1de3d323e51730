"""One self-contained HTML page about a run: nothing loads from another host (images are inline
PNGs, styles inline, no script), so it opens from disk with the network off.

``build_page`` takes sections of HTML; the helpers here make each kind: tables, inline images,
matplotlib figures, and the dialogue browser with what the model attended to.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 10px;border-bottom:2px solid #dfe3ea;padding-bottom:4px}
.sub{color:#5b6474;margin:0 0 16px} .card{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:14px 16px;margin:10px 0}
table{border-collapse:collapse;font-size:13px} th,td{padding:4px 10px;border-bottom:1px solid #eceff4;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.kpi{display:inline-block;margin:0 26px 6px 0} .kpi b{display:block;font-size:26px}
.grid{display:flex;flex-wrap:wrap;gap:14px} .grid img{max-width:540px;width:100%;border:1px solid #eceff4;border-radius:6px}
details{background:#fff;border:1px solid #dfe3ea;border-radius:8px;margin:8px 0;padding:6px 12px}
summary{cursor:pointer;font-weight:600;padding:4px 0}
.ok{color:#17803d;font-weight:600} .bad{color:#b42318;font-weight:600}
.bar{display:inline-block;height:10px;background:#3b6fd8;border-radius:2px;vertical-align:middle}
.barbg{display:inline-block;width:60px;height:10px;background:#e6ebf5;border-radius:2px;vertical-align:middle;margin-right:4px}
.heat{display:inline-block;width:14px;height:14px;margin-right:1px;border:1px solid #e3e7ee;vertical-align:middle}
.self{outline:2px solid #1d2433} .muted{color:#8a93a3} code{background:#f0f2f6;padding:1px 4px;border-radius:3px}
.tl{position:relative;background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:8px 12px 4px 96px}
.lane{position:relative;height:26px;border-bottom:1px dashed #eceff4} .lane b{position:absolute;left:-88px;top:5px;
font-weight:600;width:84px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.turn{position:absolute;top:4px;height:18px;border-radius:3px;min-width:2px;opacity:.9}
.turn:hover{outline:2px solid #1d2433;opacity:1} .axis{position:relative;height:16px;color:#8a93a3;font-size:11px}
.axis span{position:absolute;transform:translateX(-50%)} .key span{display:inline-block;margin-right:14px}
.key i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:middle}
.facelane{position:relative;height:9px;margin-bottom:4px} .facelane .turn{top:1px;height:6px;opacity:.75}
.facelane b{position:absolute;left:-88px;top:-3px;font-size:10px;font-weight:400;color:#8a93a3}
.warn{background:#fff4e5;border:1px solid #f2b134;border-radius:8px;padding:10px 14px;margin:10px 0;font-weight:600}
.model{margin:0 0 6px} .thumb{width:48px;height:48px;border-radius:4px;vertical-align:middle}
"""
PALETTE = ("#8a93a3", "#f2b134", "#3b6fd8", "#d64545", "#3aa76d", "#9b59b6", "#e67e22", "#16a2b8", "#c2185b")


class Html(str):
    """Markup made here, put into a table cell as it is (everything else is escaped)."""


def esc(value) -> str:
    return html.escape(str(value))


def table(rows: list[dict], columns=None, numeric=()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    columns = columns or list(rows[0])
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f'<td class="{"n" if c in numeric else ""}">{cell(r.get(c, ""))}</td>'
                                    for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return value if isinstance(value, Html) else esc(value)


def image(data: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def figure(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return image(buffer.getvalue(), alt)


def bar(weight: float) -> Html:
    """A weight in [0, 1] as a small horizontal bar with its value."""
    return Html(f'<span class="barbg"><span class="bar" style="width:{60 * max(0.0, min(1.0, weight)):.0f}px"></span>'
            f'</span>{weight:.2f}')


def heat_strip(weights: np.ndarray, me: int, labels: list[str]) -> Html:
    """One cell per utterance of the dialogue, darker where the memory read more; outlined: itself."""
    cells = []
    for j, w in enumerate(weights):
        shade = int(255 - 200 * min(1.0, float(w)))
        cls = "heat self" if j == me else "heat"
        cells.append(f'<span class="{cls}" title="turn {j} ({esc(labels[j])}): {w:.2f}" '
                     f'style="background:rgb({shade},{shade + int((255 - shade) * 0.3)},255)"></span>')
    return Html('<span style="white-space:nowrap">' + "".join(cells) + "</span>")


def dialogue_browser(explained: list[dict], store: dict, classes: list[str], limit: int | None = None) -> str:
    """Each dialogue as a timeline: turn, speaker, text, true and predicted emotion, the multiview
    attention of the first level (each view's two modality weights) and the memory attention.
    The first level is the one that weighs the modalities themselves: later levels mix the
    previous level's two columns, which by eq. 5-8 have almost converged (the last reads
    0.50 / 0.50 on every demo utterance and would explain nothing)."""
    blocks = []
    for k, item in enumerate(explained[:limit]):
        rows, probs = item["rows"], item["probs"]
        names = [str(store["speaker"][r]) for r in rows]
        lines = []
        for t, r in enumerate(rows):
            truth = int(store["label"][r])
            pred = int(probs[t].argmax())
            mark = "" if truth < 0 else ('<span class="ok">✓</span>' if truth == pred else '<span class="bad">✗</span>')
            line = {"turn": t, "speaker": names[t], "text": str(store.get("sentence", [""] * (r + 1))[r]),
                    "true": classes[truth] if truth >= 0 else "–",
                    "predicted": Html(f"{esc(classes[pred])} {probs[t, pred]:.2f} {mark}")}
            if item["views"] is not None:
                first = item["views"][t, 0]
                line["multiview attention (level 1 of the modalities)"] = Html("<br>".join(
                    f"{esc(a)} {bar(float(first[g, 0]))} · {esc(b)} {bar(float(first[g, 1]))}"
                    for g, (a, b) in enumerate(item["view_pairs"])))
            if item["memory"] is not None:
                line["memory attention (hop 1)"] = heat_strip(item["memory"][0, t], t, names) \
                    if item["memory"][0, t].sum() > 0 else Html('<span class="muted">no past to read</span>')
            lines.append(line)
        right = sum(1 for t, r in enumerate(rows) if store["label"][r] >= 0 and probs[t].argmax() == store["label"][r])
        labelled = int((store["label"][rows] >= 0).sum())
        score = f" · {right}/{labelled} right" if labelled else ""
        blocks.append(f"<details{' open' if k == 0 else ''}><summary>{esc(store['dialogue_id'][rows[0]])} · {len(rows)} utterances{score}"
                      f"</summary>{table(lines)}</details>")
    return "".join(blocks)


def emotion_colours(classes: list[str]) -> dict:
    """A fixed colour per class (neutral grey where there is one), so pages agree with each other."""
    ordered = sorted(classes, key=lambda c: (str(c).lower() != "neutral", list(classes).index(c)))
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(ordered)}


def timeline(turns: list[dict], classes: list[str], duration: float | None = None) -> str:
    """The recording at a glance: one lane per speaker, each turn a bar from its start to its
    end coloured by its predicted emotion; hovering shows its time, emotion and words (a
    ``title``: no script). ``turns``: dicts with speaker, start, end, predicted, probability, text;
    a turn with ``href`` is a link (to the recording at that time); where turns carry ``face``
    (what the face alone said, or empty), a thin lane beneath each speaker's shows it."""
    if not turns:
        return '<p class="muted">no turns</p>'
    colours = emotion_colours(classes)
    end = max(duration or 0.0, max(float(t["end"]) for t in turns)) or 1.0
    speakers = list(dict.fromkeys(str(t["speaker"]) for t in turns))
    faces = any("face" in t for t in turns)

    def bar(t, label, title):
        place = (f'left:{100 * float(t["start"]) / end:.3f}%;width:{100 * max(float(t["end"]) - float(t["start"]), 0) / end:.3f}%;'
                 f'background:{colours.get(label, "#8a93a3")}')
        if t.get("href"):
            return f'<a class="turn" href="{esc(t["href"])}" style="{place}" title="{esc(title)}"></a>'
        return f'<span class="turn" style="{place}" title="{esc(title)}"></span>'

    lanes = []
    for speaker in speakers:
        own = [t for t in turns if str(t["speaker"]) == speaker]
        bars = "".join(bar(t, t["predicted"], _hover(t)) for t in own)
        lanes.append(f'<div class="lane"><b title="{esc(speaker)}">{esc(speaker)}</b>{bars}</div>')
        if faces:
            face_bars = "".join(bar(t, t["face"], f"face: {t['face']}") for t in own if t.get("face"))
            lanes.append(f'<div class="facelane"><b>face</b>{face_bars}</div>')
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if end / s <= 12)
    ticks = "".join(f'<span style="left:{100 * x / end:.3f}%">{_clock(x)}</span>' for x in np.arange(0, end, step))
    key = "".join(f'<span><i style="background:{colour}"></i>{esc(name)}</span>' for name, colour in colours.items())
    return f'<div class="tl">{"".join(lanes)}<div class="axis">{ticks}</div></div><p class="key">{key}</p>'


def _clock(seconds: float, tenths: bool = False) -> str:
    """m:ss, or m:ss.s with ``tenths`` (an overlap lasts a second or less; never below 0:00.0)."""
    if tenths:
        count = round(max(0.0, seconds) * 10)
        return f"{count // 600}:{count % 600 / 10:04.1f}"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def _hover(turn: dict) -> str:
    return (f"{_clock(float(turn['start']))}-{_clock(float(turn['end']))} {turn['speaker']}: {turn['predicted']} "
            f"{float(turn['probability']):.2f}\n{turn['text']}")


def build_page(title: str, subtitle: str, sections: list[tuple[str, str]], warning: str = "",
               model_line: str = "") -> str:
    """The page; ``warning`` (plain text) stands above everything else, in a box; ``model_line``
    names the model that made what the page shows, first thing under the title."""
    body = "".join(f"<h2>{esc(name)}</h2>{content}" for name, content in sections)
    banner = f'<p class="warn">{esc(warning)}</p>' if warning else ""
    model = f'<p class="model"><b>{esc(model_line)}</b></p>' if model_line else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><main><h1>{esc(title)}</h1>{banner}{model}<p class="sub">{esc(subtitle)}</p>{body}</main></body></html>')


def jpeg(data: bytes, alt: str) -> Html:
    return Html(f'<img class="thumb" alt="{esc(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data).decode()}">')


def write_page(path, page: str) -> Path:
    from pipeline.artifacts import atomic_write

    return atomic_write(path, lambda handle: handle.write(page.encode("utf-8")))
