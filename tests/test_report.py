"""The report page (offline, attention that sums to one, rendered in a real browser) and a
user's own recording with subtitles."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.media import write_clip
from model.dimmn import DIMMN, ModelConfig
from model.explain import explain
from pipeline.cli import main
from pipeline.manifest import ManifestError
from pipeline.report import build_page, dialogue_browser
from pipeline.subtitles import read_cues
from test_model import DIMS, make_store

SRT = """1
00:00:00,100 --> 00:00:01,000
Ann: Hello there

2
00:00:01,200 --> 00:00:02,000
Bob: Hi! How are you?

3
00:00:01,900 --> 00:00:02,600
Ann: talking over you

4
00:00:02,700 --> 00:00:02,900


5
00:00:09,000 --> 00:00:10,000
Ann: long after the end
"""
VTT = """WEBVTT

NOTE speakers come from voice tags

00:00.100 --> 00:01.000
<v Ann>Hello <i>there</i>

intro
00:01.200 --> 00:02.500 align:start
<v Bob>Hi! How are you?
"""


@pytest.fixture
def video(tmp_path):
    """A real 3-second H.264/AAC clip."""
    path = tmp_path / "talk.mp4"
    t = np.arange(int(3.0 * 16000)) / 16000
    write_clip(path, np.full((36, 64, 64, 3), 100, np.uint8), 12, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    return path


def test_srt_cues_speakers_and_counted_problems(tmp_path, video):
    (tmp_path / "talk.srt").write_text(SRT)
    cues, counts = read_cues(tmp_path / "talk.srt", duration=3.0)
    assert [c["speaker"] for c in cues] == ["Ann", "Bob", "Ann"]
    assert cues[1]["text"] == "Hi! How are you?" and cues[0]["start"] == pytest.approx(0.1)
    assert counts == {"empty": 1, "past_the_end": 1, "overlapping": 1}


def test_webvtt_voice_tags(tmp_path):
    (tmp_path / "talk.vtt").write_text(VTT)
    cues, counts = read_cues(tmp_path / "talk.vtt", duration=3.0)
    assert [(c["speaker"], c["text"]) for c in cues] == [("Ann", "Hello there"), ("Bob", "Hi! How are you?")]
    assert cues[1]["end"] == pytest.approx(2.5) and not counts


@pytest.mark.parametrize("text, message", [
    ("1\n00:00:01,000 --> 00:0x:02,000\nAnn: hi\n", "line 2: broken cue timestamp"),
    ("1\n00:00:02,000 --> 00:00:01,000\nAnn: hi\n", "line 2: cue ends (00:00:01,000) before it starts (00:00:02,000)"),
    ("1\n00:00:01,000 --> 00:00:02,000\n\n", "no usable cue"),
])
def test_bad_subtitles_name_the_file_and_cue(tmp_path, text, message):
    (tmp_path / "bad.srt").write_text(text)
    with pytest.raises(ManifestError, match=re.escape("bad.srt") + ".*" + re.escape(message)):
        read_cues(tmp_path / "bad.srt", duration=3.0)


def test_ingest_subtitles_folder(tmp_path, video, capsys):
    (tmp_path / "talk.srt").write_text(SRT)
    assert main(["ingest", "--format", "subtitles", "--root", str(tmp_path), "--out", str(tmp_path / "m.csv")]) == 0
    record = json.loads((tmp_path / "m.csv.meta.json").read_text())
    assert record["counts"] == {"test": 3} and any("past the end" in s for s in record["skipped"])
    manifest = (tmp_path / "m.csv").read_text().splitlines()
    assert manifest[1].split(",")[5] == "Ann" and len(manifest) == 4


def _page():
    store = make_store(n_dialogues=3)
    store["sentence"] = np.array([f"utterance <{i}> & more" for i in range(len(store["label"]))])
    torch.manual_seed(0)
    model = DIMMN(ModelConfig(d=16, K=3, L=2), DIMS, 3).eval()
    explained = explain(model, store, store["split"] == "test", "cpu")
    return explained, build_page("report", "test", [("Dialogues", dialogue_browser(explained, store, ["a", "b", "c"]))])


def test_attention_in_the_page_sums_to_one():
    explained, page = _page()
    views = explained[0]["views"]
    assert np.allclose(views.sum(-1), 1, atol=1e-5)                       # each view's two modality weights
    memory = explained[0]["memory"]
    assert np.allclose(memory[:, 1:].sum(-1), 1, atol=1e-5) and np.allclose(memory[:, 0].sum(-1), 0)
    shown = [float(v) for v in re.findall(r"</span></span>([01]\.\d\d)", page)]
    pairs = np.array(shown).reshape(-1, 2)                                # as printed: two per view
    assert len(pairs) == 2 * 8 and np.allclose(pairs.sum(1), 1, atol=0.011)
    assert "utterance &lt;16&gt; &amp; more" in page                       # text is escaped


def test_the_page_names_no_other_host():
    _, page = _page()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//|@import|url\(|<script", page, re.I)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def render(html: Path, png: Path):
    """Headless Chromium: a screenshot, and the URLs the page itself asked for (net-log events whose
    initiator is the page; Chromium's own background requests say 'not an origin')."""
    netlog = png.with_suffix(".netlog.json")
    subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                    "--window-size=1200,1500", f"--log-net-log={netlog}", f"--screenshot={png}", html.as_uri()],
                   capture_output=True, timeout=180)
    text = netlog.read_text()
    log = json.loads(text if text.rstrip().endswith("}") else text.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"] if e["type"] == start
            and e["params"].get("initiator") not in (None, "not an origin")
            and not e["params"]["url"].startswith(("data:", "file:"))]


@pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium package (.ci/run installs it)")
def test_the_page_renders_in_a_browser_without_a_network_request(tmp_path):
    from PIL import Image

    _, page = _page()
    (tmp_path / "page.html").write_text(page)
    assert render(tmp_path / "page.html", tmp_path / "page.png") == []
    pixels = np.asarray(Image.open(tmp_path / "page.png").convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005             # text and bars, not a blank page
    (tmp_path / "leaky.html").write_text(page.replace("</main>", '<img src="http://127.0.0.1:9/x.png"></main>'))
    assert render(tmp_path / "leaky.html", tmp_path / "leaky.png") == ["http://127.0.0.1:9/x.png"]   # it can fail
