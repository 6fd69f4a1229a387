"""`training.trainer.build_step_state`: fit traces its train step once."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.trainer import build_step_state

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
