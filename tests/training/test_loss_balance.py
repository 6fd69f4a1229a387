"""`training.loss_balance`: per-term gradient norms on the shared weights, against hand-computed ones."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.models.test_mask_rcnn_train import TINY, batch  # noqa: F401 (fixture)
from tfsp.models.mask_rcnn_train import LOSS_NAMES, MaskRcnnTrainModel
from tests.training.test_train import tiny_config  # noqa: F401 (fixture)
from training.config import save_config
from training.loss_balance import TermBalance, format_balance, loss_balance, main

RTOL = 1e-5


def _two_head_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    trunk = keras.layers.Dense(8, activation="tanh", name="trunk")(x)
    outputs = {"a": keras.layers.Dense(2, name="a")(trunk), "b": keras.layers.Dense(3, name="b")(trunk)}
    model = keras.Model(x, outputs)
    model.compile(optimizer="adam", loss={"a": keras.losses.MeanSquaredError(), "b": keras.losses.MeanAbsoluteError()})
    return model


def test_per_output_terms_measure_the_shared_trunk_only():
    model = _two_head_model()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    y = {"a": tf.constant(rng.normal(size=(5, 2)), tf.float32), "b": tf.constant(rng.normal(size=(5, 3)), tf.float32)}
    terms = {term.name: term for term in loss_balance(model, [(x, y)])}
    assert set(terms) == {"a", "b"} and all(term.weight == 1.0 for term in terms.values())
    trunk = model.get_layer("trunk").trainable_variables
    for name, term in terms.items():
        with tf.GradientTape() as tape:
            loss = model.loss[name](y[name], model(x, training=True)[name])
        np.testing.assert_allclose(term.value, float(loss), rtol=RTOL)
        np.testing.assert_allclose(term.shared_norm, float(tf.linalg.global_norm(tape.gradient(loss, trunk))),
                                   rtol=RTOL)


def test_mask_rcnn_terms_carry_the_config_weights(batch):  # noqa: F811
    keras.utils.set_random_seed(0)
    model = MaskRcnnTrainModel(dataclasses.replace(TINY, keypoint_loss_weight=0.25, box_regression_loss_weight=2.0))
    terms = loss_balance(model, [batch])
    assert [term.name for term in terms] == list(LOSS_NAMES)
    weights = {term.name: term.weight for term in terms}
    assert weights["keypoint_loss"] == 0.25 and weights["box_regression_loss"] == 2.0 and weights["mask_loss"] == 1.0
    assert all(term.shared_norm > 0 and np.isfinite(term.value) for term in terms)  # every term reaches stage 1


def test_table_shares_add_up():
    terms = [TermBalance("a", 1.0, 1.0, 3.0), TermBalance("bb", 2.0, 0.5, 2.0)]
    lines = format_balance(terms).splitlines()
    assert lines[1].split() == ["a", "1.0000", "1", "3", "3", "75.0%"]
    assert lines[2].split() == ["bb", "2.0000", "0.5", "2", "1", "25.0%"]
    assert TermBalance("c", 0.0, 0.5, 4.0).weighted_norm == pytest.approx(2.0)


def test_cli_prints_a_row_per_output(tiny_config, tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    save_config(tiny_config, path)
    assert main(["--config", str(path), "--batches", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = lines[lines.index(next(line for line in lines if line.startswith("term"))) + 1:]
    assert [row.split()[0] for row in rows] == ["box_deltas", "class_logits"]
    assert sum(float(row.split()[-1].rstrip("%")) for row in rows) == pytest.approx(100.0, abs=0.2)


def test_cli_names_a_missing_config(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err
