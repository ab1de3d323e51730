"""Inputs read wrong or dropped silently (issue 20): each is now a counted reason or an error
naming the file (and line)."""
import warnings

import numpy as np
import pytest

from extractors.audio import MIN_SAMPLES, AudioConfig, AudioExtractor
from extractors.media import SAMPLE_RATE, write_clip


@pytest.fixture
def noise_clip(tmp_path):
    path = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    write_clip(path, np.full((12, 32, 32, 3), 90, np.uint8), 12, rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32))
    return path


@pytest.mark.parametrize("feature_set", sorted(MIN_SAMPLES))
def test_min_samples_is_where_opensmile_starts_giving_finite_values(feature_set):
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                            feature_level=opensmile.FeatureLevel.Functionals)
    noise = np.random.default_rng(1).normal(0, 0.1, MIN_SAMPLES[feature_set]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # openSMILE warns "segment too short" below the minimum
        shorter = smile.process_signal(noise[:-16], SAMPLE_RATE).to_numpy()[0]
    assert np.isfinite(smile.process_signal(noise, SAMPLE_RATE).to_numpy()[0]).all()
    assert np.isnan(shorter).all()


def test_a_too_short_segment_is_a_counted_reason_not_zeros(noise_clip):
    extractor = AudioExtractor(AudioConfig(feature_set="eGeMAPSv02"))
    short = extractor.extract(noise_clip, 0.2, 0.25)
    assert short.vector is None and short.error == "too_short"
    assert short.message == f"{noise_clip}: segment of 50 ms is too short for eGeMAPSv02 (needs 60 ms)"
    enough = extractor.extract(noise_clip, 0.2, 0.26)
    assert enough.error is None and np.isfinite(enough.vector).all() and np.abs(enough.vector).sum() > 0


def test_non_finite_opensmile_output_is_a_counted_reason(noise_clip, monkeypatch):
    extractor = AudioExtractor(AudioConfig(feature_set="eGeMAPSv02"))
    real = extractor.smile.process_signal

    def one_nan(signal, rate):
        frame = real(signal, rate)
        frame.iloc[0, 3] = np.inf
        return frame

    monkeypatch.setattr(extractor.smile, "process_signal", one_nan)
    result = extractor.extract(noise_clip)
    assert result.vector is None and result.error == "non_finite" and "1 of 88 values" in result.message
