"""Tests for tfsp.models.mask_rcnn_train: overfitting one batch, gradients to every graph, save/load resume."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.rcnn_proposals_tf import proposals_tf
from tfsp.data.rcnn_train_targets import make_rcnn_target_fn, rcnn_fit_targets
from tfsp.models.mask_rcnn import MASK_RCNN_SYNTH_CONFIG, MaskRcnnConfig
from tfsp.models.mask_rcnn_train import LOSS_NAMES, MaskRcnnTrainModel, person_rows_first
from tfsp.postprocess.rcnn import RPN_DELTAS_OUTPUT, RPN_OBJECTNESS_OUTPUT

SIZE, MASK_SIZE, INSTANCES, BATCH = 64, 32, 4, 2
TINY = MaskRcnnConfig(
    input_size=SIZE, num_classes=3, alpha=0.35, fpn_channels=16, anchor_sizes_px=(8, 16, 32, 64, 128), box_fc=32,
    mask_head_channels=16, mask_head_convs=1, keypoint_head_channels=16, keypoint_head_convs=1, roi_batch_size=32,
    train_pre_nms_top_k=100, train_post_nms_top_k=50)
OVERFIT_STEPS = 20
LEARNING_RATE = 1e-3
OVERFIT_MAX_RATIO = 0.7  # loss after OVERFIT_STEPS on one batch / first loss (measured ~0.46)


def _example(index: int, rng: np.random.Generator) -> dict:
    """A 64 px image with a person (class 0, 17 keypoints), a class-1 box and a crowd box."""
    boxes = np.array([[5, 5, 30, 40], [30, 10, 60, 30], [40, 40, 60, 60], [0, 0, 0, 0]], np.float32)
    class_ids = np.array([0, 1, 2, -1], np.int32)
    masks = np.zeros((INSTANCES, MASK_SIZE, MASK_SIZE), np.float32)
    masks[0, 3:20, 3:15] = 1.0
    masks[1, 5:15, 15:30] = 1.0
    masks[2, 20:30, 20:30] = 1.0
    keypoints = np.zeros((INSTANCES, 17, 3), np.float32)
    keypoints[0, :, 0], keypoints[0, :, 1] = rng.uniform(6, 29, 17), rng.uniform(6, 39, 17)
    keypoints[0, :, 2] = 2.0
    return {"image": tf.constant(rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)),
            "boxes_xyxy": tf.constant(boxes), "class_ids": tf.constant(class_ids),
            "is_crowd": tf.constant([False, False, True, False]), "keypoints": tf.constant(keypoints),
            "masks": tf.constant(masks), "image_id": tf.constant(index, tf.int64)}


@pytest.fixture(scope="module")
def batch() -> tuple[dict, tf.Tensor]:
    rng = np.random.default_rng(0)
    target_fn = make_rcnn_target_fn(TINY)
    examples = [target_fn(_example(index, rng)) for index in range(BATCH)]
    return rcnn_fit_targets({key: tf.stack([e[key] for e in examples]) for key in examples[0]})


@pytest.fixture(scope="module")
def trained(batch) -> tuple[MaskRcnnTrainModel, dict]:
    keras.utils.set_random_seed(0)
    model = MaskRcnnTrainModel(TINY)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    data = tf.data.Dataset.from_tensors(batch).repeat()
    history = model.fit(data, epochs=OVERFIT_STEPS, steps_per_epoch=1, verbose=0, shuffle=False)
    return model, history.history


def test_overfits_one_batch_with_every_loss_logged(trained):
    _, history = trained
    assert set(history) == {"loss", *LOSS_NAMES}
    for name, values in history.items():
        assert np.all(np.isfinite(values)), name
    assert history["loss"][-1] < OVERFIT_MAX_RATIO * history["loss"][0]
    for name in ("rpn_objectness_loss", "box_class_loss", "mask_loss", "keypoint_loss"):
        assert history[name][-1] < history[name][0], name
    assert history["keypoint_loss"][0] > 0.0 and history["rpn_box_loss"][0] > 0.0


def test_gradients_reach_every_graph(batch):
    model = MaskRcnnTrainModel(TINY)
    x, _ = batch
    with tf.GradientTape() as tape:
        terms = model.compute_losses(x, tf.constant(0), training=True)
        total = tf.add_n(list(terms.values()))
    variables = model.trainable_variables
    gradients = {id(v): g for v, g in zip(variables, tape.gradient(total, variables))}
    for name, graph in model.deploy_graphs().items():
        missing = [v.path for v in graph.trainable_variables if gradients[id(v)] is None]
        assert not missing, (name, missing)
        norm = sum(float(tf.reduce_sum(tf.square(gradients[id(v)]))) for v in graph.trainable_variables)
        assert norm > 0.0, name


def test_save_load_restores_weights_and_optimizer(trained, batch, tmp_path):
    model, _ = trained
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=True)
    assert isinstance(loaded, MaskRcnnTrainModel) and loaded.model_config == TINY
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == OVERFIT_STEPS
    x, _ = batch
    expected, got = model(x["image"]), loaded(x["image"])
    for name in expected:
        np.testing.assert_array_equal(got[name].numpy(), expected[name].numpy())
    for name, graph in loaded.deploy_graphs().items():
        original = model.deploy_graphs()[name]
        for a, b in zip(graph.weights, original.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    loaded.train_step(batch)  # eager: resuming needs no retrace here
    assert int(loaded.optimizer.iterations) == OVERFIT_STEPS + 1


def test_deploy_graphs_save_as_plain_keras_files(trained, batch, tmp_path):
    model, _ = trained
    x, _ = batch
    for name, graph in model.deploy_graphs().items():
        path = tmp_path / f"model.{name}.keras"
        graph.save(path)
        loaded = keras.models.load_model(path, compile=False)  # standard layers only: no custom objects
        sample = x["image"] if name == "stage1" else tf.random.stateless_normal((3, *graph.input_shape[1:]), (1, 2))
        expected, got = graph(sample), loaded(sample)
        for key in expected:
            np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())


def test_config_validates_training_fields():
    for bad in ({"roi_fg_fraction": 0.0}, {"rpn_positive_fraction": 1.5}, {"roi_batch_size": 0},
                {"person_class_id": 3}, {"keypoint_loss_weight": -1.0}, {"train_post_nms_top_k": 0},
                {"keypoint_rois_per_image": 0}, {"box_regression_loss_weight": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(TINY, **bad)
    assert dataclasses.replace(TINY, person_class_id=None).person_class_id is None
    assert TINY.roi_fg_rows == 8 and MaskRcnnConfig().roi_batch_size == 512
    assert TINY.keypoint_rows == 8 and dataclasses.replace(TINY, keypoint_rois_per_image=3).keypoint_rows == 3
    assert dataclasses.replace(TINY, keypoint_rois_per_image=99).keypoint_rows == 8
    assert MASK_RCNN_SYNTH_CONFIG.anchor_sizes_px == (16.0, 32.0, 64.0, 128.0, 256.0)
    config = MaskRcnnTrainModel(TINY).get_config()["config"]
    assert MaskRcnnTrainModel.from_config({"config": config}).model_config == TINY


def test_total_loss_weighs_keypoint_and_box_regression_terms():
    config = dataclasses.replace(TINY, keypoint_loss_weight=0.5, box_regression_loss_weight=3.0)
    terms = {name: tf.constant(float(i + 1)) for i, name in enumerate(LOSS_NAMES)}
    weights = {"keypoint_loss": 0.5, "box_regression_loss": 3.0}
    expected = sum(float(i + 1) * weights.get(name, 1.0) for i, name in enumerate(LOSS_NAMES))
    assert float(MaskRcnnTrainModel(config)._total(terms)) == pytest.approx(expected)


def test_without_person_class_the_keypoint_head_is_left_out(batch):
    model = MaskRcnnTrainModel(dataclasses.replace(TINY, person_class_id=None))
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    before = [v.numpy() for v in model.keypoint_head.trainable_variables]
    logs = model.train_step(batch)  # eager; keypoint variables get no gradient and are skipped
    assert float(logs["keypoint_loss"]) == 0.0 and np.isfinite(float(logs["loss"]))
    for value, variable in zip(before, model.keypoint_head.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_person_rows_first_keeps_the_order_within_each_group():
    matched = tf.constant([-1, 2, 0, 1, -1, 2])
    is_person = tf.constant([False, True, True])
    assert person_rows_first(matched, is_person, 4).numpy().tolist() == [1, 3, 5, 0]
    assert person_rows_first(matched, is_person, 10).numpy().tolist() == [1, 3, 5, 0, 2, 4]
    assert person_rows_first(tf.constant([-1, -1]), tf.zeros([0], tf.bool), 1).numpy().tolist() == [0]


def _person_fg_rows(model: MaskRcnnTrainModel, batch: dict, seed: tf.Tensor) -> int:
    """Foreground rows of the batch matched to a person (class 0), from the model's own sampling."""
    config = model.model_config
    outputs = model.stage1(batch["image"], training=False)
    proposals, valid = proposals_tf([outputs[RPN_OBJECTNESS_OUTPUT.format(level)] for level in config.levels],
                                    [outputs[RPN_DELTAS_OUTPUT.format(level)] for level in config.levels],
                                    model._anchors, model._proposal_config, config.input_size)
    classes = model._sample(proposals, valid, batch, seed)["roi_classes"][:, :config.roi_fg_rows]
    return int(tf.reduce_sum(tf.cast(classes == config.person_class_id + 1, tf.int32)))


def test_keypoint_rows_cut_compute_not_the_keypoint_loss(batch):
    """With room for every person row the keypoint loss is the one over all foreground rows."""
    keras.utils.set_random_seed(0)
    model = MaskRcnnTrainModel(TINY)
    seed = tf.constant(3)
    x = keras.utils.unpack_x_y_sample_weight(batch)[0]
    full = model.compute_losses(x, seed, training=False)
    persons = _person_fg_rows(model, x, seed)
    rows_per_image = -(-persons // BATCH)
    assert 1 <= rows_per_image < TINY.roi_fg_rows  # the cut below drops rows that carry no keypoint loss
    model.model_config = dataclasses.replace(TINY, keypoint_rois_per_image=rows_per_image)
    cut = model.compute_losses(x, seed, training=False)
    assert float(full["keypoint_loss"]) > 0.0
    np.testing.assert_allclose(float(cut["keypoint_loss"]), float(full["keypoint_loss"]), rtol=1e-6)
    for name in LOSS_NAMES:
        np.testing.assert_allclose(float(cut[name]), float(full[name]), rtol=1e-6, err_msg=name)
