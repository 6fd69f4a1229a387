"""Tests for tfsp.losses (SSD losses, OpenPose masked L2)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsp import losses
from tfsp.data import targets
from tfsp.models import ssd
from tfsp.postprocess.anchors import SsdAnchorConfig

LN2, LN3 = math.log(2.0), math.log(3.0)


def _golden_batch():
    """One image, six anchors, three logits (background + 2 classes)."""
    class_targets = np.array([[2, 0, 0, 0, 0, -1]], np.float32)
    logits = np.array(
        [
            [
                [0.0, 0.0, 0.0],  # positive, class 2 -> CE ln 3
                [0.0, LN2, 0.0],  # negative, background loss ln 4
                [0.0, 0.0, 0.0],  # negative, ln 3
                [0.0, 2 * LN2, 0.0],  # negative, ln 6
                [LN2, 0.0, 0.0],  # negative, ln 2 (the 4th hardest: not mined)
                [0.0, 3 * LN3, 0.0],  # ignored, ln 29 (hardest but excluded)
            ]
        ],
        np.float32,
    )
    box_true = np.zeros((1, 6, 5), np.float32)
    box_true[0, 0] = [0.5, -2.0, 0.0, 0.0, 1.0]
    box_true[0, 1:, :4] = 7.0  # targets of non-positives must not count
    box_pred = np.zeros((1, 6, 4), np.float32)
    box_pred[0, 2:] = -3.0
    return class_targets, logits, box_true, box_pred


def test_golden_single_image():
    class_targets, logits, box_true, box_pred = _golden_batch()
    cls = losses.SsdClassificationLoss()(class_targets, logits)
    box = losses.SsdBoxLoss()(box_true, box_pred)
    # 1 positive -> 3 hard negatives (ln 6, ln 4, ln 3); N = 1.
    np.testing.assert_allclose(cls.numpy(), LN3 + math.log(6 * 4 * 3), rtol=1e-6)
    # Huber: 0.5 * 0.5^2 + (2 - 0.5) = 1.625.
    np.testing.assert_allclose(box.numpy(), 1.625, rtol=1e-6)


def test_range_penalty_is_zero_inside_the_bounds_and_quadratic_outside():
    class_targets, logits, box_true, box_pred = _golden_batch()
    inside_cls = losses.SsdClassificationLoss()(class_targets, logits).numpy()
    wild = logits.copy()
    wild[0, 2, 1] = losses.LOGIT_RANGE + 3.0  # a class logit beyond the bound
    wild[0, 4, 2] = -(losses.LOGIT_RANGE + 2.0)  # an unmined negative: only the penalty sees it
    plain = losses.SsdClassificationLoss(range_weight=0.0)(class_targets, wild).numpy()
    penalised = losses.SsdClassificationLoss()(class_targets, wild).numpy()
    np.testing.assert_allclose(penalised - plain, losses.RANGE_PENALTY_WEIGHT * (3.0**2 + 2.0**2), rtol=1e-5)
    np.testing.assert_allclose(losses.SsdClassificationLoss(range_weight=0.0)(class_targets, logits).numpy(),
                               inside_cls, rtol=1e-6)
    far = box_pred.copy()
    far[0, 5, 0] = losses.DELTA_RANGE + 4.0  # a non-positive anchor: only the penalty sees it
    extra = losses.SsdBoxLoss()(box_true, far).numpy() - losses.SsdBoxLoss()(box_true, box_pred).numpy()
    np.testing.assert_allclose(extra, losses.RANGE_PENALTY_WEIGHT * 16.0, rtol=1e-5)
    np.testing.assert_allclose(losses.range_penalty(tf.constant([[1.0, -12.0], [0.0, 0.0]]), 10.0, 1.0).numpy(),
                               [4.0, 0.0])


def test_hard_negative_mask():
    class_targets, logits, _, _ = _golden_batch()
    background_loss = -tf.nn.log_softmax(logits)[..., 0]
    mask = losses.hard_negative_mask(background_loss, tf.constant(class_targets, tf.int32))
    np.testing.assert_array_equal(mask.numpy(), [[False, True, True, True, False, False]])
    ties = losses.hard_negative_mask(tf.ones((1, 6)), tf.constant([[1, 0, 0, 0, 0, 0]]), 2.0)
    np.testing.assert_array_equal(ties.numpy(), [[False, True, True, False, False, False]])


def test_normalised_by_positives_of_the_whole_batch():
    class_targets, logits, box_true, box_pred = _golden_batch()
    # Second image: two positives with uniform logits and zero box error, 4 negatives all mined.
    class_targets = np.concatenate([class_targets, [[1, 1, 0, 0, 0, 0]]]).astype(np.float32)
    logits = np.concatenate([logits, np.zeros((1, 6, 3), np.float32)])
    box_true = np.concatenate([box_true, np.zeros((1, 6, 5), np.float32)])
    box_true[1, :2, 4] = 1.0
    box_pred = np.concatenate([box_pred, np.zeros((1, 6, 4), np.float32)])
    cls = losses.SsdClassificationLoss()(class_targets, logits).numpy()
    box = losses.SsdBoxLoss()(box_true, box_pred).numpy()
    np.testing.assert_allclose(cls, (LN3 + math.log(72) + 6 * LN3) / 3, rtol=1e-6)
    np.testing.assert_allclose(box, 1.625 / 3, rtol=1e-6)


def test_zero_positives_gives_zero_loss_and_finite_gradients():
    logits = tf.Variable(tf.random.normal((2, 6, 3), seed=0))
    deltas = tf.Variable(tf.random.normal((2, 6, 4), seed=1))
    class_targets = tf.constant([[0, 0, -1, 0, 0, 0], [0] * 6], tf.float32)
    with tf.GradientTape() as tape:
        total = losses.SsdClassificationLoss()(class_targets, logits) + losses.SsdBoxLoss()(
            tf.zeros((2, 6, 5)), deltas
        )
    grads = tape.gradient(total, [logits, deltas])
    assert total.numpy() == 0.0
    assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)


def test_serialisation_round_trip():
    for loss in (losses.SsdClassificationLoss(neg_pos_ratio=2.0), losses.SsdBoxLoss(delta=0.5)):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()


@pytest.mark.slow
def test_fit_decreases_loss_and_compiled_model_reloads(tmp_path):
    anchors_config = SsdAnchorConfig(
        image_size=64, feature_map_sizes=(8, 4, 2, 1), min_scale=0.15, max_scale=0.9,
        aspect_ratios=((2.0,),) * 4,
    )
    config = ssd.SsdConfig(
        input_size=64, num_classes=2, anchors=anchors_config, alpha=0.35, extra_channels=(32,)
    )
    keras.utils.set_random_seed(0)
    model = ssd.build_ssd(config)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    boxes = np.array([[8, 8, 40, 40], [30, 20, 60, 50]], np.float32)
    target_fn = targets.make_ssd_target_fn(ssd.ssd_anchors(config))
    examples = [
        target_fn({"image": tf.constant(im), "boxes_xyxy": tf.constant(boxes),
                   "class_ids": tf.constant([i % 2, 1], tf.int32)})
        for i, im in enumerate(images)
    ]
    batch = {k: tf.stack([e[k] for e in examples]) for k in examples[0]}
    x, y = targets.ssd_fit_targets(batch)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.ssd_losses())
    history = model.fit(x, y, batch_size=4, epochs=20, verbose=0).history["loss"]
    assert all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0], history

    path = tmp_path / "ssd.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # compiled: needs the registered tfsp losses
    expected = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), expected, rtol=1e-5)
    assert isinstance(loaded.loss["class_logits"], losses.SsdClassificationLoss), loaded.loss


def _pose_case():
    """One image, 2 x 2 cells, 2 target channels (the second one the background) + the mask."""
    targets_ = np.zeros((1, 2, 2, 2), np.float32)
    targets_[0, 0, 0] = (1.0, 0.0)  # a peak: foreground 1
    targets_[0, 0, 1] = (0.5, 0.5)  # foreground 0.5
    targets_[0, 1, :, 1] = 1.0  # background row
    mask = np.array([[[[1.0], [1.0]], [[1.0], [0.0]]]], np.float32)  # cell (1, 1) ignored
    predictions = np.full((1, 2, 2, 2), 0.5, np.float32)
    return np.concatenate([targets_, mask], axis=-1), predictions


def test_masked_l2_golden_values():
    y_true, y_pred = _pose_case()
    # squared errors per cell (summed over channels): (0,0) 0.25+0.25, (0,1) 0, (1,0) 0.25+0.25, (1,1) masked
    plain = losses.MaskedL2Loss()(y_true, y_pred).numpy()
    np.testing.assert_allclose(plain, (0.5 + 0.0 + 0.5) / 4, rtol=1e-6)
    # foreground (1 - background target): (0,0) 1, (0,1) 0.5, (1,0) 0 -> weights 1 + 4 f
    weighted = losses.MaskedL2Loss(4.0, background_last=True)(y_true, y_pred).numpy()
    np.testing.assert_allclose(weighted, (5 * 0.5 + 3 * 0.0 + 1 * 0.5) / 4, rtol=1e-6)
    # PAF-style foreground (largest |target|): (0,0) 1, (0,1) 0.5, (1,0) 1
    paf_style = losses.MaskedL2Loss(4.0)(y_true, y_pred).numpy()
    np.testing.assert_allclose(paf_style, (5 * 0.5 + 0.0 + 5 * 0.5) / 4, rtol=1e-6)
    # scale multiplies the whole loss
    scaled = losses.MaskedL2Loss(4.0, background_last=True, scale=3.0)(y_true, y_pred).numpy()
    np.testing.assert_allclose(scaled, 3.0 * (5 * 0.5 + 3 * 0.0 + 1 * 0.5) / 4, rtol=1e-6)


def test_masked_l2_ignores_masked_cells_and_round_trips():
    y_true, y_pred = _pose_case()
    moved = y_pred.copy()
    moved[0, 1, 1] = 100.0  # only the masked cell changes
    loss = losses.MaskedL2Loss(2.0, background_last=True, scale=0.5)
    np.testing.assert_array_equal(loss(y_true, y_pred).numpy(), loss(y_true, moved).numpy())
    restored = losses.MaskedL2Loss.from_config(loss.get_config())
    assert (restored.foreground_weight, restored.background_last, restored.scale) == (2.0, True, 0.5)
    assert keras.losses.deserialize(keras.losses.serialize(loss)).foreground_weight == 2.0
