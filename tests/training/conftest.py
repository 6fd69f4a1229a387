"""Fixtures shared by the training tests."""

import keras
import pytest

from tfsp.data.coco import load_split
from tfsp.spec_builders import pose_spec

POSE_SIZE, POSE_MAP = 128, 32  # stride 4: ground-truth fields parse back into the people


@pytest.fixture(scope="module")
def pose_run(synth_data, tmp_path_factory):
    """An untrained pose graph whose heatmaps stay below the peak threshold, saved with its spec."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((POSE_SIZE, POSE_SIZE, 3))
    features = keras.layers.AveragePooling2D(POSE_SIZE // POSE_MAP)(keras.layers.Rescaling(1 / 255)(inputs))
    features = keras.layers.Conv2D(4, 1, activation="relu")(features)
    silent = keras.initializers.Constant(-10.0)  # sigmoid(-10) stays far below the peak threshold
    model = keras.Model(inputs, {
        "heatmaps": keras.layers.Conv2D(18, 1, activation="sigmoid", bias_initializer=silent)(features),
        "pafs": keras.layers.Conv2D(36, 1, activation="tanh")(features)})
    train = load_split(synth_data, "train")
    spec = pose_spec(POSE_SIZE, POSE_MAP, train.class_names, train.category_ids)
    run_dir = tmp_path_factory.mktemp("pose_diag")
    model.save(run_dir / "model.keras")
    spec.to_json(run_dir / "spec.json")
    return run_dir, model, spec, train
