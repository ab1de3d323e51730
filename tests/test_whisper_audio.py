"""audio.backbone whisper: Whisper's encoder in torch, from the transcription stage's weights."""
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from extractors.audio import AudioConfig, AudioExtractor
from extractors.base import ExtractorError
from extractors.media import write_clip
from pipeline.stages import media

WHISPER = AudioConfig(backbone="whisper")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def voiced(tmp_path_factory):
    """A clip of 6 s of changing tones and noise, loud enough to be speech-like to the encoder."""
    rate, t = 16000, np.arange(6 * 16000) / 16000
    pitch = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    signal = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / rate) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    signal += 0.02 * np.random.default_rng(0).standard_normal(len(t))
    path = tmp_path_factory.mktemp("voiced") / "voiced.mp4"
    write_clip(path, np.full((12, 32, 32, 3), 90, np.uint8), 2, signal.astype(np.float32))
    return str(path)


def test_the_torch_encoder_gives_ctranslate2s_last_layer(weights, voiced):
    import ctranslate2
    from faster_whisper import WhisperModel

    from extractors.media import load_audio
    from extractors.weights import whisper_folder

    extractor = AudioExtractor(WHISPER, weights_root=weights)
    mel = extractor.encoder.mel(load_audio(voiced, 0.0, 4.0), padding=0)[None, :, :400]
    ours = extractor.encoder.net(__import__("torch").from_numpy(np.ascontiguousarray(mel)), 6)[0].detach().numpy()
    reference = WhisperModel(str(whisper_folder("base", weights)), device="cpu", compute_type="float32")
    theirs = np.array(reference.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)),
                                             to_cpu=True))[0]
    assert ours.shape == theirs.shape == (200, 512)
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()   # measured 6e-5 of a 16 peak


@pytest.mark.parametrize("layer, pooling, dim", [(6, "mean", 512), (3, "mean_std", 1024)])
def test_whisper_features_on_a_generated_clip(weights, voiced, layer, pooling, dim):
    extractor = AudioExtractor(AudioConfig(backbone="whisper", layer=layer, pooling=pooling), weights_root=weights)
    first = extractor.extract(voiced, 0.5, 3.0)
    assert first.error is None and first.vector.shape == (dim,) and np.isfinite(first.vector).all()
    other = extractor.extract(voiced, 3.0, 5.5).vector
    assert not np.allclose(first.vector, other)   # another stretch of sound, another feature


def test_a_whisper_feature_is_the_same_alone_and_beside_other_utterances(weights, voiced, tmp_path):
    rows = pd.DataFrame({"utterance_id": ["a", "b", "c", "d"], "media": voiced,
                         "start": [0.0, 1.2, 2.0, 4.1], "end": [1.5, 3.3, 6.0, 5.0]})
    together, present, _, _, counts = media.extract_raw("audio", rows, WHISPER, tmp_path / "cache", workers=2,
                                                        progress=False)
    assert present.all() and counts["computed"] == 4
    for row in rows.itertuples():
        alone = AudioExtractor(WHISPER, weights_root=weights).extract(row.media, row.start, row.end)
        np.testing.assert_array_equal(together[row.Index], alone.vector)
    # and in a run of its own, with no companion at all (a fresh cache)
    alone, _, _, _, _ = media.extract_raw("audio", rows.iloc[[2]], WHISPER, tmp_path / "other", workers=1,
                                          progress=False)
    np.testing.assert_array_equal(alone[0], together[2])
    assert (tmp_path / "cache" / "weights" / "whisper-base" / "model.bin").is_file()   # the transcription's folder


def test_an_utterance_over_30_s_is_encoded_in_pieces(weights, tmp_path):
    long = tmp_path / "long.mp4"
    t = np.arange(70 * 16000) / 16000
    write_clip(long, np.full((70, 16, 16, 3), 90, np.uint8), 1, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    extractor = AudioExtractor(WHISPER, weights_root=weights)
    pieces = lambda seconds: [len(p) for p in extractor.encoder._pieces(np.zeros(int(seconds * 16000), np.float32))]  # noqa: E731
    assert pieces(70) == [480000, 480000, 160000]
    assert pieces(60.05) == [480000, 480000]   # a 50 ms tail is no window of its own
    result = extractor.extract(str(long))
    assert result.error is None and result.vector.shape == (512,) and np.isfinite(result.vector).all()


def test_short_and_silent_segments_are_counted_reasons_and_bad_settings_refused(weights, voiced, tmp_path):
    extractor = AudioExtractor(WHISPER, weights_root=weights)
    short = extractor.extract(voiced, 1.0, 1.05)
    assert short.vector is None and short.error == "too_short" and "needs 100 ms" in short.message
    write_clip(tmp_path / "silent.mp4", np.full((6, 32, 32, 3), 90, np.uint8), 12, np.zeros(8000, np.float32))
    assert extractor.extract(tmp_path / "silent.mp4").error == "silent"
    with pytest.raises(ExtractorError, match=r"audio.layer 7: Whisper base's encoder has layers 1..6 \(0: the last\)"):
        AudioExtractor(AudioConfig(backbone="whisper", layer=7), weights_root=weights)
    last = AudioExtractor(AudioConfig(backbone="whisper", layer=6), weights_root=weights).extract(voiced, 0.5, 3.0)
    np.testing.assert_array_equal(extractor.extract(voiced, 0.5, 3.0).vector, last.vector)   # layer 0 is the last
    tiny = AudioExtractor(AudioConfig(backbone="whisper", whisper_model="tiny.en"), weights_root=weights)
    assert tiny.encoder.layer == 4 and tiny.extract(voiced, 0.5, 3.0).vector.shape == (384,)


def test_the_other_backbones_settings_key_no_cache_entry():
    params = media.cache_params(AudioExtractor, AudioConfig())
    assert params == media.cache_params(AudioExtractor, AudioConfig(layer=3, pooling="mean_std"))
    assert "backbone" not in params and "feature_set" in params   # handcrafted keys as before the backbone existed
    whisper = media.cache_params(AudioExtractor, WHISPER)
    assert whisper == media.cache_params(AudioExtractor, AudioConfig(backbone="whisper", feature_set="IS09"))
    assert whisper != media.cache_params(AudioExtractor, AudioConfig(backbone="whisper", layer=3))


def test_real_clips_one_actor_s_six_emotions_sit_closer_than_other_speakers(weights):
    cremad = sorted(shared("cremad_clips").glob("1001_*.flv"))
    others = sorted(shared("real_clips").glob("*.mp4")) + [shared("clips") / "facerec_short_hamilton_clip.mp4"]
    extractor = AudioExtractor(WHISPER, weights_root=weights)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    actor = np.stack([unit(extractor.extract(str(p)).vector) for p in cremad])
    rest = np.stack([unit(extractor.extract(str(p)).vector) for p in others])
    within = (actor @ actor.T)[np.triu_indices(len(actor), 1)].mean()
    across = (actor @ rest.T).mean()
    assert len(actor) == 6 and len(rest) >= 2 and within > across, (within, across)


def test_predict_compares_the_runs_complete_settings_and_only_those_its_backbone_reads(tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.lineage import write_record
    from pipeline.stages.predict import check_settings

    run = tmp_path / "run"
    run.mkdir()
    (run / "audio.pt").write_bytes(b"")
    write_record(run / "audio.pt", "audio", {"backbone": "whisper", "dim": 8}, [],   # layer left to its default
                 extra={"extractor": asdict(WHISPER)})
    check_settings(run, {"audio": {"backbone": "whisper", "dim": 8, "feature_set": "IS09", "workers": 1}}, ["audio"])
    with pytest.raises(PipelineError, match="audio.layer is 4 here but 0 in the run"):
        check_settings(run, {"audio": {"backbone": "whisper", "dim": 8, "layer": 4}}, ["audio"])
    with pytest.raises(PipelineError, match="audio.backbone is 'handcrafted' here but 'whisper' in the run"):
        check_settings(run, {"audio": {"dim": 8}}, ["audio"])
    with pytest.raises(PipelineError, match=r"unknown key\(s\) \['layers'\]"):
        check_settings(run, {"audio": {"backbone": "whisper", "dim": 8, "layers": 4}}, ["audio"])
