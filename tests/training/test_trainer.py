"""`training.trainer`: fit traces its train step once; a config trains the same weights twice."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.coco import load_split
from tfsp.models.openpose import OpenPoseConfig, deploy_openpose
from training.config import DataConfig, EvalConfig, ModelKind, ScheduleConfig, TrainConfig
from training.trainer import build_compiled, build_step_state, make_train_dataset, train

TINY_POSE = OpenPoseConfig(input_size=64, channels=8, initial_blocks=1, num_refinement_stages=1,
                           refinement_blocks=1)

BATCH, STEPS = 4, 3


def _model_and_data() -> tuple[keras.Model, tf.data.Dataset]:
    image = keras.Input((8,), name="image")
    outputs = {"a": keras.layers.Dense(2, name="a")(image), "b": keras.layers.Dense(3, name="b")(image)}
    model = keras.Model(image, outputs)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss={"a": "mse", "b": "mse"})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 8)).astype(np.float32)
    y = {"a": rng.normal(size=(BATCH * STEPS, 2)).astype(np.float32),
         "b": rng.normal(size=(BATCH * STEPS, 3)).astype(np.float32)}
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def _traces_of_fit(model: keras.Model, data: tf.data.Dataset) -> int:
    """Python calls of ``model.train_step`` while ``fit`` runs STEPS graph steps (one per trace)."""
    calls = []
    original = model.train_step

    def counted(batch):
        calls.append(1)
        return original(batch)

    model.train_step = counted
    model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    return len(calls)


@pytest.mark.parametrize("prebuilt", [False, True])
def test_fit_traces_the_train_step_once_after_build_step_state(prebuilt):
    model, data = _model_and_data()
    if prebuilt:
        build_step_state(model, data)
        assert model.optimizer.built
        assert len(model.optimizer.variables) > 2 * len(model.trainable_variables)  # Adam slots exist
    # Keras creates the optimizer slots and loss trackers inside the first trace, and TF then
    # traces again; the `False` case pins that this test would see the second trace.
    assert _traces_of_fit(model, data) == (1 if prebuilt else 2)


def test_build_step_state_keeps_a_resumed_optimizer():
    model, data = _model_and_data()
    model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    state = [np.array(v) for v in model.optimizer.variables]
    build_step_state(model, data)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(state, model.optimizer.variables))
    assert len(state) == len(model.optimizer.variables)


@pytest.fixture(scope="module")
def tiny_pose_config(synth_data, tmp_path_factory) -> TrainConfig:
    return TrainConfig(model=ModelKind.OPENPOSE, openpose=TINY_POSE,
                       data=DataConfig(root=str(synth_data), batch_size=4),
                       schedule=ScheduleConfig(epochs=2, steps_per_epoch=1, warmup_epochs=1.0),
                       eval=EvalConfig(every_epochs=0), out_dir=str(tmp_path_factory.mktemp("pose")),
                       run_eagerly=True)


def _first_batch(config: TrainConfig, start_epoch: int = 0) -> list[np.ndarray]:
    image, targets = next(iter(make_train_dataset(config, load_split(config.data.root, "train"), start_epoch)))
    return [image.numpy()] + [targets[name].numpy() for name in sorted(targets)]


def test_a_deterministic_config_trains_the_same_weights_twice(tiny_pose_config, tmp_path):
    runs = [train(dataclasses.replace(tiny_pose_config, out_dir=str(tmp_path / name)), verbose=0)
            for name in ("a", "b")]
    first, second = (keras.models.load_model(run.model_path, compile=False).get_weights() for run in runs)
    assert len(first) == len(second) > 0
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert runs[0].metrics["final_losses"] == runs[1].metrics["final_losses"]
    untrained = deploy_openpose(build_compiled(tiny_pose_config)).get_weights()  # the same seeded start
    assert not all(np.array_equal(a, b) for a, b in zip(first, untrained))


def test_training_batches_follow_the_seed_and_the_start_epoch(tiny_pose_config):
    batch = _first_batch(tiny_pose_config)
    tf.random.set_seed(1234)  # the global seed left by other code does not matter
    assert all(np.array_equal(a, b) for a, b in zip(batch, _first_batch(tiny_pose_config)))
    resumed = _first_batch(tiny_pose_config, start_epoch=1)  # a resumed run draws new orders
    assert not np.array_equal(batch[0], resumed[0])
    other_seed = _first_batch(dataclasses.replace(tiny_pose_config, seed=1))
    assert not np.array_equal(batch[0], other_seed[0])
