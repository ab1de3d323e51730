"""Audio, visual and text extractors: real features, and bad input counted or refused clearly."""
import json

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from extractors.audio import AudioConfig, AudioExtractor, AudioFeatureSet
from extractors.media import NoAudioStream, write_clip
from extractors.text import TextConfig, TextError, TextFeaturizer, train_text_cnn
from extractors.visual import VisualConfig, VisualExtractor
from pipeline.parts import load_part, save_part
from pipeline.stages import media, text
from pipeline.store import align

CLASSES = ["neutral", "happy", "sad", "angry"]


@pytest.mark.parametrize("feature_set, dim", [("eGeMAPSv02", 88), ("emobase", 988), ("IS09", 384), ("fbank", 120)])
def test_audio_feature_sets(tiny_corpus, feature_set, dim):
    root, manifest = tiny_corpus
    result = AudioExtractor(AudioConfig(feature_set=feature_set)).extract(manifest["media"][0])
    assert result.error is None and result.vector.shape == (dim,) and np.isfinite(result.vector).all()
    assert {f.value for f in AudioFeatureSet} >= {"ComParE_2016", "IS13"}


def test_silent_track_is_a_counted_fallback_and_no_audio_a_typed_error(tmp_path):
    frames = np.full((6, 32, 32, 3), 90, np.uint8)
    write_clip(tmp_path / "silent.mp4", frames, 12, np.zeros(8000, np.float32))
    write_clip(tmp_path / "mute.mp4", frames, 12, None)
    extractor = AudioExtractor(AudioConfig(feature_set="eGeMAPSv02"))
    result = extractor.extract(tmp_path / "silent.mp4")
    assert result.vector is None and result.error == "silent" and "silent.mp4" in result.message
    with pytest.raises(NoAudioStream):
        extractor.extract(tmp_path / "mute.mp4")


def test_demo_faces_are_found_and_a_faceless_clip_is_counted(tiny_corpus, tmp_path):
    root, manifest = tiny_corpus
    results = [VisualExtractor(VisualConfig()).extract(m) for m in manifest["media"]]
    assert sum(r.info["face_frames"] for r in results) >= 0.7 * sum(r.info["frames"] for r in results)
    assert all(np.isfinite(r.vector).all() for r in results)
    write_clip(tmp_path / "wall.mp4", np.full((12, 64, 64, 3), 120, np.uint8), 12, np.zeros(8000, np.float32))
    full = VisualExtractor(VisualConfig(no_face="full_frame")).extract(tmp_path / "wall.mp4")
    assert full.vector is not None and full.info["face_frames"] == 0
    dropped = VisualExtractor(VisualConfig(no_face="drop")).extract(tmp_path / "wall.mp4")
    assert dropped.vector is None and dropped.error == "no_face"


def test_cnn3d_backbone_gives_face_clips(tiny_corpus):
    _, manifest = tiny_corpus
    vector = VisualExtractor(VisualConfig(backbone="cnn3d")).extract(manifest["media"][0]).vector
    assert vector.shape == (8 * 32 * 32,) and 0 <= vector.min() and vector.max() <= 1
    with pytest.raises(ValueError, match="unknown visual backbone 'resnet'"):
        VisualExtractor(VisualConfig(backbone="resnet"))


def test_real_cremad_clips_faces_found_and_coverage_reported(tmp_path):
    folder = shared("cremad_clips")
    clips = sorted(folder.glob("*.flv"))
    manifest = pd.DataFrame({"utterance_id": [c.stem for c in clips], "dialogue_id": [f"cremad{i}" for i in range(len(clips))], "speaker": "1001",
                             "split": "train", "turn": range(len(clips)), "text": "Don't forget a jacket",
                             "label": "neutral", "media": [str(c) for c in clips], "start": np.nan, "end": np.nan})
    paths = {}
    for modality, params in (("audio", {"feature_set": "eGeMAPSv02", "dim": 4}), ("visual", {"dim": 4, "fps": 3})):
        paths[modality] = tmp_path / f"{modality}.npz"
        matrix, present, extra = media.build(modality, manifest, CLASSES, params, paths[modality],
                                             tmp_path / f"{modality}.pt", tmp_path / "cache", progress=False)
        assert present.all() and np.isfinite(matrix).all()
    assert extra["face_frames"] >= 0.9 * extra["frames"] and extra["clips_without_face"] == 0
    _, report = align(manifest, CLASSES, paths, tmp_path / "store.npz", tmp_path / "coverage.json")
    saved = json.loads((tmp_path / "coverage.json").read_text())
    assert saved["modalities"]["visual"]["face_frames"] == extra["face_frames"]
    assert saved["modalities"]["audio"]["present"] == len(clips) and saved["modalities"]["audio"]["finite"]


def _toy_text():
    train = ["I love it", "great day", "so sad today", "I miss you", "I hate this", "ridiculous stuff",
             "okay then", "fine sure"] * 4
    labels = np.array([1, 1, 2, 2, 3, 3, 0, 0] * 4)
    return train, labels


def test_text_cnn_learns_saves_and_reloads(tmp_path):
    texts, y = _toy_text()
    config = TextConfig(embedding_dim=16, feature_maps=8, lr=0.02, epochs=40, patience=40, w2v_epochs=5)
    featurizer, info = train_text_cnn(texts, y, texts, y, CLASSES, config)
    assert (featurizer.predict_proba(texts).argmax(1) == y).mean() > 0.9
    save_part(featurizer, tmp_path / "cnn.pt")
    again = load_part(tmp_path / "cnn.pt")
    assert isinstance(again, TextFeaturizer)
    feats = again.transform(["I love it", "unseen words entirely"])
    assert feats.shape == (2, 100) and np.allclose(feats[0], featurizer.transform(["I love it"])[0], atol=1e-6)


def test_empty_transcript_is_counted_not_fatal(tiny_corpus, tmp_path):
    root, manifest = tiny_corpus
    texts, y = _toy_text()
    rows = pd.DataFrame({"utterance_id": [f"u{i}" for i in range(len(texts))], "dialogue_id": [f"d{i // 4}" for i in range(len(texts))],
                         "split": ["train"] * 24 + ["valid"] * 4 + ["test"] * 4, "text": texts,
                         "label": [CLASSES[i] for i in y], "turn": 0, "speaker": "A"})
    rows.loc[30, "text"] = "   "
    params = {"embedding_dim": 16, "feature_maps": 8, "epochs": 3, "w2v_epochs": 2}
    matrix, present = text.build(rows, CLASSES, params, tmp_path / "text.npz", tmp_path / "cnn.pt")
    assert not present[30] and present.sum() == len(rows) - 1 and not matrix[30].any()
    saved = np.load(tmp_path / "text.npz")
    assert saved["missing_reason"][30] == "empty_text"


def test_word_vector_file_of_the_wrong_dimension(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nlove 0.1 0.2 0.3\nhate 0.3 0.2 0.1\n")
    texts, y = _toy_text()
    with pytest.raises(TextError, match=r"vectors.txt: word vectors have dimension 3, but text.embedding_dim is 100"):
        train_text_cnn(texts, y, texts, y, CLASSES, TextConfig(vectors=str(vectors)))
    with pytest.raises(TextError, match="not found"):
        train_text_cnn(texts, y, texts, y, CLASSES, TextConfig(vectors=str(tmp_path / "nope.txt")))
    featurizer, info = train_text_cnn(texts, y, texts, y, CLASSES,
                                      TextConfig(vectors=str(vectors), embedding_dim=3, epochs=1))
    assert info["vectors_coverage"] > 0


def _two_faces(path, speaking: str, seed: int = 0):
    """Two drawn faces side by side; only the ``speaking`` one's mouth opens with the sound (the
    other's opens and closes at random), so the largest-face rule cannot tell them apart."""
    from pipeline.demo.face import Expression, draw_face

    rng = np.random.default_rng(seed)
    fps, seconds, rate = 24, 4.0, 16000
    n = int(fps * seconds)
    syllables = np.repeat(rng.random(int(seconds * 4)) > 0.4, fps // 4)[:n].astype(float)  # on/off at 4 Hz
    other = np.repeat(rng.random(int(seconds * 4)) > 0.4, fps // 4)[:n].astype(float)
    face = Expression(0.0, 0.0, 0.0, 0.7)
    frames = []
    for i in range(n):
        talk, quiet = (syllables[i], other[i]) if speaking == "left" else (other[i], syllables[i])
        left = draw_face(face, talk, (128, 128), (0, 0), (200, 170, 150), rng, 2.0)
        right = draw_face(face, quiet, (128, 128), (0, 0), (200, 170, 150), rng, 2.0)
        frames.append(np.concatenate([left, right], axis=1))
    t = np.arange(int(seconds * rate)) / rate
    loud = syllables[np.minimum((t * fps).astype(int), n - 1)]
    audio = (0.3 * loud * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    write_clip(path, np.stack(frames), fps, audio)
    return path


@pytest.mark.parametrize("detector", ["mediapipe", "cascade"])
@pytest.mark.parametrize("speaking", ["left", "right"])
def test_the_active_speaker_is_the_face_whose_mouth_moves_with_the_voice(tmp_path, speaking, detector):
    clip = _two_faces(tmp_path / f"{speaking}.mp4", speaking)
    active = VisualExtractor(VisualConfig(speaker="active", fps=4, detector=detector)).extract(clip)
    assert active.info["speaker"] == "active" and active.info["faces_followed"] == 2
    assert active.info["active_score"] > 0.5
    assert (active.info["speaker_x"] < 0.5) == (speaking == "left")      # the speaking face, wherever it is
    largest = VisualExtractor(VisualConfig(fps=4)).extract(clip)
    assert "speaker" not in largest.info and largest.vector.shape == active.vector.shape


def _together(tmp_path, seed=0, speakers=2):
    """A generated conversation with every speaker's face on screen (speaker k in the k-th panel),
    its picture one frame ahead of its sound; rows are the true turns."""
    from pipeline.demo.recording import RecordingSpec, make_recording

    path = tmp_path / f"together{speakers}_{seed}.mp4"
    truth = make_recording(path, RecordingSpec(speakers=speakers, turns=10, seed=seed, layout="together"))
    rows = pd.DataFrame([{"utterance_id": f"t{i:02d}", "dialogue_id": "together", "speaker": t["speaker"],
                          "media": str(path), "start": t["start"], "end": t["end"]} for i, t in enumerate(truth["turns"])])
    return rows, [int(t["speaker"][1:]) - 1 for t in truth["turns"]]


def test_a_together_recording_shows_every_speaker_also_one_without_a_turn(tmp_path):
    from extractors.media import load_frames
    from pipeline.demo.recording import RecordingSpec, make_recording

    # 3 speakers, 2 turns (S2 then S1): S3 never speaks, and the frame was 2 panels wide, not 3
    truth = make_recording(tmp_path / "few.mp4", RecordingSpec(speakers=3, turns=2, seed=1, layout="together"))
    assert sorted(t["speaker"] for t in truth["turns"]) == ["S1", "S2"]
    assert load_frames(tmp_path / "few.mp4", 2.0)[0][0].shape == (128, 3 * 160, 3)


def test_the_speaking_face_is_found_when_the_picture_is_a_frame_out_of_step_with_the_sound(tmp_path):
    # before the offset search and the movement weighting, 4-7 of these 10 turns got the listener's face
    rows, panel = _together(tmp_path)
    _, present, _, infos, counts = media.extract_raw("visual", rows, VisualConfig(speaker="active"),
                                                     tmp_path / "cache", workers=1, progress=False)
    assert present.all() and all(i["faces_followed"] == 2 for i in infos)
    assert {"speakers_tied", "retied"} <= set(counts)   # the stage prints both (a KeyError when none was tied)
    assert [int(i["speaker_x"] * 2) for i in infos] == panel


def test_an_utterance_too_short_to_read_its_mouth_follows_its_speakers_face(tmp_path):
    rows, panel = _together(tmp_path)
    # a quarter second (3 frames at 12 fps) inside each turn: too few to match a mouth to the voice
    short = rows.assign(utterance_id=[f"s{i:02d}" for i in range(len(rows))], start=rows["start"] + 0.5,
                        end=rows["start"] + 0.75)
    rows = pd.concat([rows, short], ignore_index=True)
    n = len(short)
    apart = VisualConfig(speaker="active", tie_speakers=False)
    _, _, _, alone, _ = media.extract_raw("visual", rows, apart, tmp_path / "cache", workers=1, progress=False)
    assert {i["speaker"] for i in alone[-n:]} == {"largest"}
    wrong = [int(i["speaker_x"] * 2) != k for i, k in zip(alone[-n:], panel)]
    assert any(wrong)   # the largest of two faces of one size: a guess
    _, _, _, tied, counts = media.extract_raw("visual", rows, VisualConfig(speaker="active"), tmp_path / "cache",
                                              workers=1, progress=False)
    assert counts["speakers_tied"] == 2
    assert [int(i["speaker_x"] * 2) for i in tied[-n:]] == panel   # each on its own speaker's face
    assert [i["speaker"] == "tied" for i in tied[-n:]] == wrong   # re-extracted where the guess was wrong
    assert tied[:-n] == alone[:-n]   # the whole turns kept the face their own mouth chose
    # called as a function on rows with no dialogue_id (was a KeyError): each file is one recording
    _, _, _, undialogued, _ = media.extract_raw("visual", rows.drop(columns="dialogue_id"),
                                                VisualConfig(speaker="active"), tmp_path / "cache", workers=1,
                                                progress=False)
    assert undialogued == tied
    retied = wrong.index(True)
    one, info = short.iloc[retied], tied[n + retied]
    again = VisualExtractor(replace(apart, face_x=round(info["speaker_x"], 2)))   # as a run given face_x
    assert again.extract(one["media"], one["start"], one["end"]).info == info


def test_a_speaker_is_tied_to_a_face_only_where_most_of_their_confident_utterances_agree():
    from extractors.visual import needs_tying, speaker_faces

    def info(x, score, faces=2):
        return {"speaker": "active", "speaker_x": x, "active_score": score, "faces_followed": faces}

    keys = ["A", "A", "A", "B", "B", "C"]
    infos = [info(0.25, 0.6), info(0.27, 0.5), info(0.75, 0.4), info(0.25, 0.5), info(0.75, 0.5), info(0.5, 0.1)]
    assert speaker_faces(keys, infos) == {"A": 0.27}   # B: split half and half; C: no confident utterance
    assert needs_tying(info(0.75, 0.1), 0.27) and not needs_tying(info(0.75, 0.5), 0.27)   # strong evidence stays
    assert not needs_tying(info(0.26, 0.1), 0.27) and not needs_tying(info(0.75, 0.1, faces=1), 0.27)
    with pytest.raises(ValueError, match="face_x .* needs speaker: active"):
        VisualConfig(face_x=0.5)
    for bad in (-0.5, 1.5):   # between -1 and 0 once meant "none" in silence
        with pytest.raises(ValueError, match="a share of the frame's width"):
            VisualConfig(speaker="active", face_x=bad)
    # utterances of nobody in particular (subtitles without names say unknown) are not one person's
    unnamed = [("d", who) for who in ("unknown", "", "nan", "Unknown")]
    assert speaker_faces(unnamed, [info(0.25, 0.6)] * 4) == {}


def test_a_face_x_given_in_the_params_is_not_moved_by_tying():
    # visual.face_x 0.75 with tie_speakers (its default): the utterances it pinned on weak evidence
    # were extracted again on their speaker's face elsewhere, 7 of 12 off the face asked for
    def info(how, x, score):
        return {"speaker": how, "speaker_x": x, "active_score": score, "faces_followed": 2}

    keys = [("d", "A")] * 3
    infos = [info("active", 0.25, 0.6), info("active", 0.27, 0.5), info("tied", 0.75, None)]
    assert VisualConfig(speaker="active").tied_faces(keys, infos) == ({2: 0.26}, 1)
    assert VisualConfig(speaker="active", face_x=0.75).tied_faces(keys, infos) == ({}, 0)


def test_a_region_map_gives_each_utterance_its_side_and_the_cache_entries_of_that_side(tmp_path):
    from pipeline.errors import ParamsError

    clip = str(_two_faces(tmp_path / "two.mp4", "left"))
    rows = pd.DataFrame({"utterance_id": ["Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses02M_impro01_F000"],
                         "media": clip, "start": [0.0, 0.0, 1.0], "end": [4.0, 4.0, 4.0]})
    region = {"Ses01*_F*": "left", "Ses01*_M*": "right", "*": "full"}   # IEMOCAP-style: per session and speaker
    config = VisualConfig(fps=4, region=region)
    raw, present, _, _, counts = media.extract_raw("visual", rows, config, tmp_path / "cache", workers=1, progress=False)
    assert present.all() and counts["computed"] == 3
    for row, side in zip(rows.itertuples(), ["left", "right", "full"]):
        alone = VisualExtractor(VisualConfig(fps=4, region=side)).extract(row.media, row.start, row.end)
        np.testing.assert_array_equal(raw[row.Index], alone.vector)
    # the entries are those of a run with one side for all: all left, only the 'full' row is new
    # (the first two rows are one segment, so they share the left entry)
    _, _, _, _, again = media.extract_raw("visual", rows, VisualConfig(fps=4, region="left"), tmp_path / "cache",
                                          workers=1, progress=False)
    assert again["cached"] == 2 and again["computed"] == 1
    with pytest.raises(ParamsError, match="matches utterance 'Ses02M_impro01_F000'"):
        media.extract_raw("visual", rows, VisualConfig(region={"Ses01*": "left"}), tmp_path / "cache", workers=1,
                          progress=False)
    with pytest.raises(ValueError, match="visual.region: {'\\*': 'middle'} is not a side"):
        media.extract_raw("visual", rows, VisualConfig(region={"*": "middle"}), tmp_path / "cache", workers=1,
                          progress=False)


def test_mediapipe_finds_a_face_in_at_least_as_many_real_frames_as_the_cascade():
    from extractors.faces import face_finder
    from extractors.media import load_frames

    clips = [shared("real_clips/meld_train_dia0_utt0.mp4"), shared("real_clips/Ses05F_impro03_F000.mp4"),
             shared("cremad_clips/1001_DFA_ANG_XX.flv")]
    found = {}
    for detector in ("mediapipe", "cascade"):
        finder = face_finder(detector, min_face=24)
        found[detector] = [sum(bool(finder.find_all(f)) for f in load_frames(c, 4.0, max_side=480)[0]) for c in clips]
    assert all(m >= c for m, c in zip(found["mediapipe"], found["cascade"])), found
    assert found["mediapipe"][0] == 23   # MELD's wide shot: a face in every sampled frame


def test_landmarks_measure_the_mouth_and_a_faceless_clip_is_counted(tmp_path):
    from extractors.faces import GEOMETRY, LandmarkReader, face_finder, geometry
    from pipeline.demo.face import Expression, draw_face

    rng = np.random.default_rng(0)
    finder, reader = face_finder("mediapipe", min_face=24), LandmarkReader()
    opening = []
    for mouth in (0.0, 0.5, 1.0):
        face = draw_face(Expression(0.0, 0.0, 0.0, 0.7), mouth, (128, 128), (0, 0), (200, 170, 150), rng, 2.0)
        (box,) = finder.find_all(face)
        opening.append(geometry(reader.points(face, box))[GEOMETRY.index("mouth_open")])
    assert opening[0] < opening[1] < opening[2]

    extractor = VisualExtractor(VisualConfig(backbone="landmarks"))
    real = extractor.extract(shared("cremad_clips/1001_DFA_ANG_XX.flv"))
    assert real.vector.shape == (5 * len(GEOMETRY) + 1,) and np.isfinite(real.vector).all()
    assert real.vector[-1] == 1.0                      # every sampled frame's face mesh was read
    write_clip(tmp_path / "wall.mp4", np.full((12, 64, 64, 3), 120, np.uint8), 12, None)
    blank = extractor.extract(tmp_path / "wall.mp4")
    assert blank.vector is None and blank.error == "no_face" and "wall.mp4" in blank.message


def test_detect_every_searches_every_nth_frame_and_holds_the_box_between(tiny_corpus):
    _, manifest = tiny_corpus
    clip = manifest["media"][0]
    every = VisualExtractor(VisualConfig(detect_every=3))
    calls = []
    find_all = every.finder.find_all
    every.finder.find_all = lambda rgb: calls.append(1) or find_all(rgb)
    held = every.extract(clip)
    full = VisualExtractor(VisualConfig(detect_every=1)).extract(clip)
    assert len(calls) == -(-held.info["frames"] // 3)
    assert held.info["face_frames"] == full.info["face_frames"] == full.info["frames"]
    assert held.vector.shape == full.vector.shape


def test_a_box_is_not_carried_onto_a_frame_where_the_face_is_gone(tiny_corpus):
    """A cut to a faceless shot between two detections: the carried box would be scored as a face."""
    from extractors.media import load_frames

    _, manifest = tiny_corpus
    face = load_frames(manifest["media"][0], 4.0, None, None, 480, True)[0][0]
    wall = np.full_like(face, 120)
    extractor = VisualExtractor(VisualConfig(detect_every=3))
    boxes = extractor._largest_boxes([face, wall, face, face, wall, wall])
    assert [b is not None for b in boxes] == [True, False, True, True, False, False]
    assert VisualConfig(detect_every=3).cache_fields() != VisualConfig(detect_every=1).cache_fields()


def test_detect_every_searches_again_on_the_frame_after_a_miss(tiny_corpus):
    _, manifest = tiny_corpus
    extractor = VisualExtractor(VisualConfig(detect_every=3))
    find_all, calls = extractor.finder.find_all, []

    def first_misses(rgb):
        calls.append(1)
        return [] if len(calls) == 1 else find_all(rgb)

    extractor.finder.find_all = first_misses
    result = extractor.extract(manifest["media"][0])
    frames = result.info["frames"]
    assert len(calls) == 1 + -(-(frames - 1) // 3)   # frame 0 missed, so frame 1 was searched, then every 3rd
    assert result.info["face_frames"] == frames - 1


def _face_then_blank(path, face_seconds: float, seconds: float = 4.0, fps: int = 12):
    """A drawn face for the first ``face_seconds``, then an empty picture."""
    from pipeline.demo.face import Expression, draw_face

    rng = np.random.default_rng(0)
    face = draw_face(Expression(0.0, 0.0, 0.0, 0.7), 0.3, (128, 128), (0, 0), (200, 170, 150), rng, 2.0)
    frames = [face if i < face_seconds * fps else np.full_like(face, 40) for i in range(int(seconds * fps))]
    write_clip(path, np.stack(frames), fps, np.zeros(int(seconds * 16000), np.float32))
    return path


def test_the_face_read_is_pictured_from_the_middle_frame_or_the_nearest_with_a_face(tmp_path):
    import base64

    import cv2

    whole = _face_then_blank(tmp_path / "face.mp4", 4.0)
    half = _face_then_blank(tmp_path / "half.mp4", 1.5)   # the middle of [0, 4] shows no face: looked for outwards
    extractor = VisualExtractor(VisualConfig(speaker="active"))
    for clip in (whole, half):
        jpeg = base64.b64decode(extractor.extract(clip, 0.0, 3.9).info["thumbnail"])
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (72, 72, 3) and picture.std() > 10   # a face, not the flat background
    assert extractor.extract(half, 2.0, 3.9).info["thumbnail"] is None   # no face anywhere in the turn
    assert extractor.extract(whole).info["thumbnail"] is not None        # an open-ended span
    assert "thumbnail" not in VisualExtractor(VisualConfig()).extract(whole).info   # only the speaking face's


def _counting_finder(extractor) -> list:
    """Record each frame the extractor's face finder is run on."""
    find_all, calls = extractor.finder.find_all, []
    extractor.finder.find_all = lambda rgb: calls.append(1) or find_all(rgb)
    return calls


def test_one_face_at_a_time_is_found_on_the_sampled_frames_only(tmp_path):
    """The frames between samples are searched only where two faces are on screen: with one,
    they cannot change which face is read, and searching them was most of predict's face time."""
    one = _face_then_blank(tmp_path / "one.mp4", 4.0)
    extractor = VisualExtractor(VisualConfig(speaker="active", fps=4, active_fps=12))
    calls = _counting_finder(extractor)
    result = extractor.extract(one)
    assert len(calls) == result.info["frames"] == 16 and result.info["face_frames"] == 16
    assert result.info["speaker"] == "largest" and result.info["faces_followed"] == 1
    two = _two_faces(tmp_path / "two.mp4", "right")
    calls.clear()
    result = extractor.extract(two)
    assert len(calls) == 48 and result.info["speaker"] == "active"   # every frame at active_fps
    assert result.info["speaker_x"] > 0.5
    short = extractor.extract(two, 1.0, 1.05)   # one frame: too short for mouths, the larger face is read
    assert short.info["face_frames"] == 1 and short.info["speaker"] == "largest"


def test_the_mouths_are_followed_at_least_as_often_as_faces_are_sampled():
    with pytest.raises(ValueError, match="visual.active_fps 0.5"):
        VisualConfig(speaker="active", fps=4, active_fps=0.5)
    VisualConfig(speaker="active", fps=4, active_fps=4)


def test_the_picture_of_a_face_cut_by_the_frame_keeps_its_shape():
    import base64

    import cv2

    from extractors.visual import face_picture

    white = np.full((100, 100, 3), 255, np.uint8)
    jpeg = face_picture([white], [np.array([-20, -20, 60, 60])], "cascade")   # a quarter of the box off the frame
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(jpeg), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert picture[:20, :20].mean() < 20 and picture[-20:, -20:].mean() > 235   # black outside, not stretched
