"""A recording of real people, labelled by the shipped model: does each turn's label follow what
the words and the face show, or is every turn the same?

    python bench/real_recording.py --data ../shared/data

Joins the real clips of ../shared/data into one recording (12 fps, 480 x 360, 16 kHz, 0.4 s of
black and silence between clips): CREMA-D's actor 1001 saying "Don't forget a jacket" as anger,
disgust, fear, happiness, neutral and sadness, MELD's Chandler (neutral) and IEMOCAP's Ses05F
(excited, MELD's joy), with a subtitle file of the known words, then runs ``predict --video
--subtitles`` with the shipped model (no ``--run``). These clips are for checking, never for
fitting: the fusion rule and every weight were fixed before this ran. The last line is one JSON
object: per turn the truth and what the words, the face and both together said; how many
different labels the turns got; and how many each channel got right.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import last_line  # first: it pins the CPU kernels before numpy loads
import cv2
import numpy as np
import pandas as pd

from extractors.media import load_audio, load_frames, write_clip
from pipeline.transcripts import subtitles_text

ROOT = Path(__file__).resolve().parents[1]
CREMAD = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "joy", "NEU": "neutral", "SAD": "sadness"}
FPS, SIZE, RATE, GAP = 12, (480, 360), 16000, 0.4


def clips(data: Path) -> list[dict]:
    from pipeline.manifest import read_csv_any_encoding

    found = [{"path": p, "speaker": "Actor1001", "text": "Don't forget a jacket.", "truth": CREMAD[p.stem.split("_")[2]]}
             for p in sorted((data / "cremad_clips").glob("1001_*.flv"))]
    meld = data / "real_clips" / "meld_train_dia0_utt0.mp4"
    if meld.is_file():
        found.append({"path": meld, "speaker": "Chandler", "truth": "neutral",
                      "text": str(read_csv_any_encoding(data / "meld_text" / "train_sent_emo.csv")["Utterance"][0])})
    iemocap = data / "real_clips" / "Ses05F_impro03_F000.mp4"
    if iemocap.is_file():
        table = pd.read_csv(data / "iemocap_text" / "iemocap_utterances.csv")
        first = table[(table["dialogue_id"] == "Ses05F_impro03") & (table["speaker"] == "F")].iloc[0]
        found.append({"path": iemocap, "speaker": "Ses05F", "text": str(first["text"]), "truth": "joy"})   # excited
    return found


def letterbox(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = min(SIZE[0] / w, SIZE[1] / h)
    resized = cv2.resize(frame, (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2))
    out = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    y, x = (SIZE[1] - resized.shape[0]) // 2, (SIZE[0] - resized.shape[1]) // 2
    out[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return out


def assemble(parts: list[dict], video: Path) -> list[dict]:
    frames, audio, cues, t = [], [], [], GAP
    gap_frames, gap_audio = [np.zeros((SIZE[1], SIZE[0], 3), np.uint8)] * round(GAP * FPS), np.zeros(round(GAP * RATE))
    frames += gap_frames
    audio.append(gap_audio)
    for part in parts:
        picture, _ = load_frames(part["path"], FPS)
        sound = load_audio(part["path"], sample_rate=RATE)
        length = min(len(picture) / FPS, len(sound) / RATE)
        frames += [letterbox(f) for f in picture[:int(length * FPS)]]
        audio.append(sound[:int(length * FPS) * RATE // FPS])
        cues.append({"start": round(t, 3), "end": round(t + int(length * FPS) / FPS, 3), "speaker": part["speaker"],
                     "text": part["text"]})
        t += int(length * FPS) / FPS + GAP
        frames += gap_frames
        audio.append(gap_audio)
    write_clip(video, np.stack(frames), FPS, np.concatenate(audio).astype(np.float32), RATE)
    return cues


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", help="folder for the recording and what predict writes (default: a temporary one)")
    parser.add_argument("--run", help="another run folder (default: the shipped model)")
    args = parser.parse_args()
    parts = clips(Path(args.data))
    out = Path(args.out or tempfile.mkdtemp(prefix="real_recording_"))
    out.mkdir(parents=True, exist_ok=True)
    cues = assemble(parts, out / "talk.mp4")
    (out / "talk.srt").write_text(subtitles_text(cues))
    subprocess.run([sys.executable, "-m", "pipeline", "predict", "--video", str(out / "talk.mp4"), "--subtitles",
                    str(out / "talk.srt"), "--out", str(out / "result" / "talk.csv")] + (["--run", args.run] if args.run else []),
                   cwd=ROOT, check=True)
    table = pd.read_csv(out / "result" / "talk.csv", keep_default_na=False)
    classes = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
    rows = []
    for part, (_, row) in zip(parts, table.iterrows()):
        words = max(classes, key=lambda c: float(row[f"text_p_{c}"]))
        rows.append({"clip": part["path"].name, "truth": part["truth"], "words": words, "face": row["face"] or None,
                     "together": row["predicted"]})
    right = {k: sum(r[k] == r["truth"] for r in rows) for k in ("words", "face", "together")}
    last_line({"turns": rows, "distinct_labels": len({r["together"] for r in rows}), "right_of": len(rows),
               "right": right, "folder": str(out)})


if __name__ == "__main__":
    main()
