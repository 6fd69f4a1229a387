"""Fixtures shared by the training tests."""

import keras
import pytest

from tfsp.data.coco import load_split
from tfsp.spec_builders import pose_spec

POSE_SIZE, POSE_MAP = 128, 32  # stride 4: ground-truth fields parse back into the people
SILENT_BIAS = -10.0  # sigmoid(-10) stays far below the peak threshold: no peaks, no people


@pytest.fixture(scope="session")
def tiny_pose_model():
    """Builds an untrained pose graph: pooling, a 1x1 conv, heatmaps (sigmoid) and PAFs (tanh)."""

    def build(size: int, map_size: int, width: int, silent: bool = False) -> keras.Model:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((size, size, 3))
        features = keras.layers.AveragePooling2D(size // map_size)(keras.layers.Rescaling(1 / 255)(inputs))
        features = keras.layers.Conv2D(width, 1, activation="relu")(features)
        bias = keras.initializers.Constant(SILENT_BIAS) if silent else "zeros"
        return keras.Model(inputs, {
            "heatmaps": keras.layers.Conv2D(18, 1, activation="sigmoid", bias_initializer=bias)(features),
            "pafs": keras.layers.Conv2D(36, 1, activation="tanh")(features)})

    return build


@pytest.fixture(scope="module")
def pose_run(synth_data, tmp_path_factory, tiny_pose_model):
    """An untrained pose graph whose heatmaps stay below the peak threshold, saved with its spec."""
    model = tiny_pose_model(POSE_SIZE, POSE_MAP, 4, silent=True)
    train = load_split(synth_data, "train")
    spec = pose_spec(POSE_SIZE, POSE_MAP, train.class_names, train.category_ids)
    run_dir = tmp_path_factory.mktemp("pose_diag")
    model.save(run_dir / "model.keras")
    spec.to_json(run_dir / "spec.json")
    return run_dir, model, spec, train
