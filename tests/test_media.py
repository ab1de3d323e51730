"""The media layer on generated clips, on real clips, and on broken ones."""
import numpy as np
import pytest

from conftest import shared
from extractors.media import (CorruptMedia, MediaError, NoAudioStream, NoVideoStream, load_audio, load_frames,
                              probe, write_clip)


def test_generated_clips_decode_with_expected_streams(tiny_corpus):
    root, manifest = tiny_corpus
    for media in manifest["media"]:
        info = probe(root / media)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac")
        assert (info.width, info.height, info.fps, info.sample_rate) == (160, 128, 12.0, 16000)
        audio = load_audio(root / media)
        frames, times = load_frames(root / media)
        assert audio.dtype == np.float32 and np.abs(audio).max() > 0.01  # speech, not silence
        assert abs(len(audio) / 16000 - info.duration) < 0.1
        assert frames.shape[1:] == (128, 160, 3)
        assert abs(len(frames) - info.duration * 12) <= 1.5
        assert np.all(np.diff(times) > 0)


def test_segment_and_frame_rate(tiny_corpus):
    root, manifest = tiny_corpus
    clip = root / manifest["media"][0]
    audio = load_audio(clip, start=0.2, end=0.7)
    assert len(audio) == pytest.approx(0.5 * 16000, abs=2)
    frames, times = load_frames(clip, fps=4, start=0.25, end=1.25)
    assert len(frames) == 4
    assert times[0] >= 0.25 - 1 / 12 and times[-1] < 1.25
    audio_8k = load_audio(clip, sample_rate=8000)
    assert len(audio_8k) == pytest.approx(len(load_audio(clip)) / 2, abs=64)


def test_write_clip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, 8000).astype(np.float32)
    write_clip(tmp_path / "a.mp4", frames, 12, audio)
    write_clip(tmp_path / "b.mp4", frames, 12, audio)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_clip_without_audio_gives_typed_error(tmp_path):
    clip = tmp_path / "silent_film.mp4"
    write_clip(clip, np.zeros((4, 32, 32, 3), np.uint8), 12, None)
    with pytest.raises(NoAudioStream, match="silent_film.mp4.*no audio"):
        load_audio(clip)
    assert load_frames(clip)[0].shape == (4, 32, 32, 3)


def test_clip_without_video_gives_typed_error(tmp_path):
    clip = tmp_path / "radio.mp4"
    write_clip(clip, None, 12, np.zeros(4000, np.float32))
    with pytest.raises(NoVideoStream, match="radio.mp4"):
        load_frames(clip)


@pytest.mark.parametrize("keep", [0.0, 0.3])
def test_truncated_or_empty_file_gives_corrupt_media(tiny_corpus, tmp_path, keep):
    root, manifest = tiny_corpus
    data = (root / manifest["media"][0]).read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptMedia, match="broken.mp4") as info:
        load_audio(broken)
        load_frames(broken)
    assert info.value.reason == "corrupt"


def test_missing_file_and_bad_segment(tiny_corpus, tmp_path):
    with pytest.raises(MediaError, match="not found"):
        probe(tmp_path / "nope.mp4")
    root, manifest = tiny_corpus
    with pytest.raises(MediaError, match="not after"):
        load_audio(root / manifest["media"][0], start=1.0, end=0.5)


@pytest.mark.parametrize("name", ["1001_DFA_ANG_XX.flv", "1001_DFA_NEU_XX.flv", "1001_DFA_SAD_XX.flv"])
def test_real_cremad_flv_with_mp3_audio(name):
    clip = shared(f"cremad_clips/{name}")
    info = probe(clip)
    assert info.audio_codec == "mp3" and info.sample_rate == 44100 and (info.width, info.height) == (480, 360)
    audio = load_audio(clip)
    assert 1.5 < len(audio) / 16000 < 3.5 and np.abs(audio).max() > 0.05
    frames, times = load_frames(clip, fps=5)
    assert frames.shape[1:] == (360, 480, 3)
    assert abs(len(frames) - info.duration * 5) <= 2


def test_real_hamilton_clip_segment():
    clip = shared("clips/facerec_short_hamilton_clip.mp4")
    info = probe(clip)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and 9 < info.duration < 11
    audio = load_audio(clip, start=2.0, end=5.0)
    assert len(audio) == pytest.approx(3 * 16000, abs=2)
    frames, times = load_frames(clip, fps=2, start=2.0, end=5.0, max_side=320)
    assert len(frames) == 6 and max(frames.shape[1:3]) == 320
    assert 1.9 < times[0] < 2.1


@pytest.mark.parametrize("name", ["meld_train_dia0_utt0.mp4", "Ses05F_impro03_F000.mp4"])
def test_real_meld_and_iemocap_clips(name):
    clip = shared(f"real_clips/{name}")
    info = probe(clip)
    audio = load_audio(clip)
    assert abs(len(audio) / 16000 - info.duration) < 0.2
    frames, _ = load_frames(clip, fps=3, max_side=256)
    assert len(frames) >= 3


def _every_third_is_the_slower_sampling(clip, start, end, reference_only):
    slow, slow_times = load_frames(clip, 4, start, end, 240, reference_only)
    dense, dense_times = load_frames(clip, 12, start, end, 240, reference_only)
    assert np.array_equal(dense[::3], slow) and np.array_equal(dense_times[::3], slow_times)


@pytest.mark.parametrize("span", [(None, None), (0.0, 1.0), (0.37, 1.9), (1.13, 1.2)])
def test_the_active_speaker_s_frames_hold_the_sampled_ones(tiny_corpus, span):
    # VisualExtractor takes its fps frames from the active_fps decode (decoded once, not twice)
    root, manifest = tiny_corpus
    for reference_only in (False, True):
        _every_third_is_the_slower_sampling(root / manifest["media"][0], *span, reference_only)


@pytest.mark.parametrize("span", [(None, None), (0.41, 3.3), (2.0, 2.05)])
def test_the_active_speaker_s_frames_hold_the_sampled_ones_in_a_real_clip(span):
    clip = shared("real_clips/meld_train_dia0_utt0.mp4")   # 23.976 fps, B-frames
    for reference_only in (False, True):
        _every_third_is_the_slower_sampling(clip, *span, reference_only)


def test_reference_only_decoding_samples_at_most_a_few_frames_early():
    clip = shared("real_clips/meld_train_dia0_utt0.mp4")   # H.264 with B-frames: 101 of its 136 frames
    frames, times = load_frames(clip, fps=4, max_side=240)
    fast, fast_times = load_frames(clip, fps=4, max_side=240, reference_only=True)
    assert fast.shape == frames.shape
    early = times - fast_times
    assert (early >= -1e-6).all() and early.max() <= 3 / probe(clip).fps + 1e-6 and (early > 1e-6).any()
    same = np.abs(early) < 1e-6   # where the sampled frame was a reference frame, it is the same frame
    assert same.any() and np.array_equal(fast[same], frames[same])
