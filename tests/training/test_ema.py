"""Weight averaging (EMA): the averages the optimizer keeps, evaluation on them, and what a run saves."""

import dataclasses

import keras
import numpy as np
import pytest

from training.callbacks import checkpoint_paths
from training.config import (ConfigError, DataConfig, EvalConfig, OptimizerConfig, ScheduleConfig, TrainConfig,
                             config_from_dict)
from training.ema import averaged_weights, keep_averaged_weights, uses_ema
from training.trainer import make_optimizer, train
from tests.training.test_train import BATCH, TINY_SSD

MOMENTUM = 0.75
STEPS = 5
RUN_MOMENTUM = 0.5  # two steps: averages 0.5 * w1 + 0.5 * w2, far from w2


def _trainable(model: keras.Model) -> list[np.ndarray]:
    return [np.array(variable.numpy()) for variable in model.trainable_variables]


def _dense_model(ema_momentum: float | None) -> keras.Model:
    config = TrainConfig(optimizer=OptimizerConfig(learning_rate=0.1, ema_momentum=ema_momentum),
                         schedule=ScheduleConfig(epochs=1, steps_per_epoch=STEPS, warmup_epochs=0.0))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=make_optimizer(config), loss="mse")
    return model


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)


def test_averaged_weights_are_the_moving_average_of_the_steps_and_the_raw_weights_come_back():
    model = _dense_model(MOMENTUM)
    x, y = _batch()
    expected = None
    for _ in range(STEPS):
        model.train_on_batch(x, y)
        after_step = _trainable(model)
        expected = after_step if expected is None else [
            MOMENTUM * average + (1.0 - MOMENTUM) * weight for average, weight in zip(expected, after_step)]
    raw = _trainable(model)
    with averaged_weights(model) as inside:
        averaged = _trainable(inside)
    assert uses_ema(model)
    for got, want, last in zip(averaged, expected, raw):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got, last, atol=1e-4)  # the average lags the last step
    assert all(np.array_equal(a, b) for a, b in zip(_trainable(model), raw))
    keep_averaged_weights(model)
    keep_averaged_weights(model)  # idempotent
    for got, want in zip(_trainable(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_without_ema_nothing_changes():
    model = _dense_model(None)
    x, y = _batch()
    model.train_on_batch(x, y)
    raw = _trainable(model)
    with averaged_weights(model):
        inside = _trainable(model)
    keep_averaged_weights(model)
    assert not uses_ema(model)
    assert all(np.array_equal(a, b) and np.array_equal(b, c) for a, b, c in zip(raw, inside, _trainable(model)))


@pytest.mark.parametrize("momentum", [1.0, -0.1])
def test_momentum_outside_the_unit_interval_names_the_field(momentum):
    with pytest.raises(ConfigError, match=r"run\.yaml.*optimizer.*ema_momentum"):
        config_from_dict({"optimizer": {"ema_momentum": momentum}}, source="run.yaml")


def test_a_run_saves_the_averaged_weights_also_when_a_finished_run_is_reloaded(synth_data, tmp_path):
    config = TrainConfig(
        ssd=TINY_SSD, data=DataConfig(root=str(synth_data), batch_size=BATCH),
        optimizer=OptimizerConfig(ema_momentum=RUN_MOMENTUM),
        schedule=ScheduleConfig(epochs=2, steps_per_epoch=1, warmup_epochs=0.0),
        eval=EvalConfig(every_epochs=1), out_dir=str(tmp_path / "ssd"), run_eagerly=True)
    result = train(config, verbose=0)
    saved = _trainable(keras.models.load_model(result.model_path, compile=False))
    checkpoint = keras.models.load_model(checkpoint_paths(config.out_dir)[0], compile=True)
    raw = _trainable(checkpoint)
    with averaged_weights(checkpoint):
        averaged = _trainable(checkpoint)
    assert all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(saved, averaged))
    assert not all(np.allclose(a, b, atol=1e-6) for a, b in zip(saved, raw))
    assert [entry["epoch"] for entry in result.state.evaluations] == [1, 2]

    again = train(dataclasses.replace(config), resume=True, verbose=0)  # finished: no fit, reloaded
    reloaded = _trainable(keras.models.load_model(again.model_path, compile=False))
    assert all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(reloaded, averaged))
