"""Mask R-CNN (+ keypoints) training model: the four split graphs and a train step computing every loss.

:class:`MaskRcnnTrainModel` owns the graphs of :mod:`tfsp.models.mask_rcnn` and
:mod:`tfsp.models.mask_rcnn_heads` (``stage1``, ``box_head``, ``mask_head``, ``keypoint_head``);
:meth:`~MaskRcnnTrainModel.deploy_graphs` hands them out for saving and export
(``model.keras`` and ``model.{head}.keras``, ``tfsp.runtime.graph_chain.head_path``). One train step:

1. stage 1 on the images -> FPN maps, RPN logits and deltas; RPN losses against the
   per-example targets of :func:`tfsp.data.rcnn_train_targets.make_rcnn_target_fn`;
2. proposals (:func:`tfsp.data.rcnn_proposals_tf.proposals_tf`, no gradient) -> per image
   :func:`tfsp.data.rcnn_targets.sample_rois` (``roi_batch_size`` rows, foreground first);
3. :func:`tfsp.data.roi_align_tf.multilevel_roi_align_tf` (differentiable w.r.t. the FPN maps,
   TFLite-free) -> box head -> classification and regression losses;
4. the first ``config.roi_fg_rows`` rows of each image (every foreground RoI) -> mask head with
   :func:`~tfsp.data.rcnn_head_targets.mask_targets`; ``batch * config.keypoint_rows`` of them, those
   matched to a person first (:func:`person_rows_first`) -> keypoint head with
   :func:`~tfsp.data.rcnn_head_targets.keypoint_targets` (persons: ``config.person_class_id``).

RoI sampling seeds are ``(optimizer.iterations, image index)``: reproducible, new every step.
Batch keys are those of :data:`tfsp.data.rcnn_train_targets.RCNN_FIT_KEYS`.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tfsp.data.rcnn_head_targets import keypoint_targets, mask_targets
from tfsp.data.rcnn_proposals_tf import proposals_tf
from tfsp.data.rcnn_targets import sample_rois
from tfsp.data.roi_align_tf import multilevel_roi_align_tf
from tfsp.models import mask_rcnn_losses as losses
from tfsp.models.mask_rcnn import MaskRcnnConfig, build_stage1, fpn_anchor_config
from tfsp.models.mask_rcnn_heads import build_box_head, build_keypoint_head, build_mask_head
from tfsp.postprocess.rcnn import (BOX_COORDS, FPN_OUTPUT, RPN_DELTAS_OUTPUT, RPN_OBJECTNESS_OUTPUT,
                                   RpnProposalConfig, generate_fpn_anchors)
from tfsp.postprocess.rcnn_masks import KEYPOINT_LOGITS, MASK_LOGITS
from tfsp.postprocess.roi_align import DEFAULT_SAMPLING_RATIO
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS
from tfsp.runtime.graph_chain import BOX_HEAD_GRAPH, KEYPOINT_HEAD_GRAPH, MASK_HEAD_GRAPH

STAGE1_GRAPH = "stage1"
"""``deploy_graphs`` key of stage 1 (saved as the main model file)."""

LOSS_NAMES = ("rpn_objectness_loss", "rpn_box_loss", "box_class_loss", "box_regression_loss", "mask_loss",
              "keypoint_loss")
"""Loss terms logged beside ``loss`` (their weighted sum); names end in ``loss`` like Keras' per-output
losses, so the trainer records them per epoch."""

EVAL_SEED = 0
"""First seed component of the RoI sampling in ``test_step`` (fixed: comparable validation losses)."""

_SAMPLE_SIGNATURE = {
    "rois": tf.TensorSpec([None, BOX_COORDS], tf.float32),
    "roi_classes": tf.TensorSpec([None], tf.int32),
    "box_targets": tf.TensorSpec([None, BOX_COORDS], tf.float32),
    "matched_gt": tf.TensorSpec([None], tf.int32),
    "roi_weights": tf.TensorSpec([None], tf.float32),
}


def person_rows_first(matched_gt: tf.Tensor, gt_is_person: tf.Tensor, count: tf.Tensor | int) -> tf.Tensor:
    """Picks ``count`` RoI rows, those matched to a person first, each group in its original order.

    Args:
        matched_gt: (N,) int32 ground-truth row of each RoI, -1 when unmatched.
        gt_is_person: (M,) bool per ground-truth row.
        count: rows to pick; at most N are picked.

    Returns:
        (min(count, N),) int32 row indices into ``matched_gt``.
    """
    person = tf.concat([tf.cast(gt_is_person, tf.bool), [False]], axis=0)
    rows_person = tf.gather(person, tf.where(matched_gt >= 0, matched_gt, tf.shape(gt_is_person)[0]))
    picked = tf.minimum(tf.cast(count, tf.int32), tf.shape(matched_gt)[0])
    return tf.math.top_k(tf.cast(rows_person, tf.int32), k=picked).indices  # ties keep the lower index first


@keras.saving.register_keras_serializable(package="tfsp")
class MaskRcnnTrainModel(keras.Model):
    """Mask R-CNN with keypoints, trainable with ``compile(optimizer=...)`` and ``fit``.

    ``call(image)`` returns stage 1's dict outputs (see :func:`tfsp.models.mask_rcnn.build_stage1`).

    Args:
        config: model configuration (a ``MaskRcnnConfig`` or its ``dataclasses.asdict``).
        **kwargs: ``keras.Model`` arguments (``name``, ...).
    """

    def __init__(self, config: MaskRcnnConfig | dict, **kwargs):
        super().__init__(**kwargs)
        # 1. configuration
        if isinstance(config, dict):
            config = MaskRcnnConfig(**config)
        self.model_config = config
        self._anchors = generate_fpn_anchors(fpn_anchor_config(config))  # per level, (N_l, 4) input px
        self._proposal_config = RpnProposalConfig(pre_nms_top_k=config.train_pre_nms_top_k,
                                                  post_nms_top_k=config.train_post_nms_top_k)
        # 2. the four graphs
        self.stage1 = build_stage1(config)
        self.box_head = build_box_head(config)
        self.mask_head = build_mask_head(config)
        self.keypoint_head = build_keypoint_head(config)
        # 3. loss trackers (epoch means in the logs)
        self._trackers = [keras.metrics.Mean(name=name) for name in ("loss", *LOSS_NAMES)]
        self.built = True  # every variable exists now: save, load and the optimizer need no sample batch

    def deploy_graphs(self) -> dict[str, keras.Model]:
        """The four graphs by file role: :data:`STAGE1_GRAPH` (the main file) and the heads by their
        ``tfsp.runtime.graph_chain`` names (``head_path(main_file, name)``)."""
        return {STAGE1_GRAPH: self.stage1, BOX_HEAD_GRAPH: self.box_head, MASK_HEAD_GRAPH: self.mask_head,
                KEYPOINT_HEAD_GRAPH: self.keypoint_head}

    def call(self, inputs, training: bool = False):
        image = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.stage1(image, training=training)

    @property
    def metrics(self):
        return list(self._trackers)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "config": dataclasses.asdict(self.model_config)}

    @classmethod
    def from_config(cls, config: dict) -> MaskRcnnTrainModel:
        return cls(**config)

    def _sample(self, proposals, proposal_valid, x, seed_base) -> dict[str, tf.Tensor]:
        """Per image ``sample_rois``: dict of (B, R, ...) tensors."""
        cfg = self.model_config
        class_ids = tf.cast(x["class_ids"], tf.int32)
        gt_valid = (class_ids >= 0) & ~tf.cast(x["is_crowd"], tf.bool)
        batch = tf.shape(class_ids)[0]
        seeds = tf.stack([tf.fill([batch], seed_base), tf.range(batch)], axis=1)

        def one(args):
            boxes, valid, gt_boxes, classes, gt_ok, seed = args
            return sample_rois(boxes, gt_boxes, classes, gt_ok, seed, num_rois=cfg.roi_batch_size,
                               fg_fraction=cfg.roi_fg_fraction, proposal_valid=valid)

        return tf.map_fn(one, (proposals, proposal_valid, tf.cast(x["boxes_xyxy"], tf.float32), class_ids,
                               gt_valid, seeds), fn_output_signature=_SAMPLE_SIGNATURE)

    def compute_losses(self, x: dict, seed_base: tf.Tensor, training: bool) -> dict[str, tf.Tensor]:
        """Every loss term of one batch (module docstring).

        Args:
            x: batch dict with the keys of ``RCNN_FIT_KEYS`` (shapes of ``make_dataset`` with masks).
            seed_base: scalar int32, first component of the RoI sampling seeds.
            training: forwarded to the graphs (batch-norm mode).

        Returns:
            dict of :data:`LOSS_NAMES` -> scalar float32 (unweighted).
        """
        cfg = self.model_config
        outputs = self.stage1(x["image"], training=training)
        fpn = [outputs[FPN_OUTPUT.format(level)] for level in cfg.levels]
        objectness = [outputs[RPN_OBJECTNESS_OUTPUT.format(level)] for level in cfg.levels]
        deltas = [outputs[RPN_DELTAS_OUTPUT.format(level)] for level in cfg.levels]
        result = {}
        result["rpn_objectness_loss"], result["rpn_box_loss"] = losses.rpn_losses(
            objectness, deltas, x["rpn_labels"], x["rpn_deltas"], cfg.rpn_batch_size)
        # proposals and RoI sampling (constants)
        proposals, valid = proposals_tf(objectness, deltas, self._anchors, self._proposal_config, cfg.input_size)
        sampled = self._sample(proposals, valid, x, seed_base)
        rois = sampled["rois"]
        batch, rows = tf.shape(rois)[0], cfg.roi_batch_size
        # box head
        features = multilevel_roi_align_tf(fpn, rois, cfg.levels, cfg.box_roi_size, DEFAULT_SAMPLING_RATIO)
        head = self.box_head(tf.reshape(features, [batch * rows, cfg.box_roi_size, cfg.box_roi_size, -1]),
                             training=training)
        flat = {key: tf.reshape(value, tf.concat([[batch * rows], tf.shape(value)[2:]], axis=0))
                for key, value in sampled.items()}
        result["box_class_loss"], result["box_regression_loss"] = losses.box_head_losses(
            head[CLASS_LOGITS], head[BOX_DELTAS], flat["roi_classes"], flat["box_targets"], flat["roi_weights"])
        # mask and keypoint heads on the foreground rows
        fg = cfg.roi_fg_rows
        fg_rois = rois[:, :fg]
        fg_classes = tf.reshape(sampled["roi_classes"][:, :fg], [-1])
        instances = tf.shape(x["class_ids"])[1]
        matched = sampled["matched_gt"][:, :fg]
        matched = tf.reshape(tf.where(matched >= 0, matched + tf.range(batch)[:, None] * instances, -1), [-1])
        flat_rois = tf.reshape(fg_rois, [-1, BOX_COORDS])
        masks = x["masks"]
        gt_masks = tf.reshape(masks, tf.concat([[-1], tf.shape(masks)[2:]], axis=0))
        targets = mask_targets(gt_masks, flat_rois, matched, cfg.input_size, cfg.mask_size)
        mask_features = multilevel_roi_align_tf(fpn, fg_rois, cfg.levels, cfg.mask_roi_size, DEFAULT_SAMPLING_RATIO)
        mask_logits = self.mask_head(tf.reshape(mask_features, [batch * fg, cfg.mask_roi_size, cfg.mask_roi_size, -1]),
                                     training=training)[MASK_LOGITS]
        result["mask_loss"] = losses.mask_loss(mask_logits, fg_classes, targets)
        if cfg.person_class_id is None:
            result["keypoint_loss"] = tf.constant(0.0)
            return result
        is_person = tf.reshape(tf.cast(x["class_ids"], tf.int32) == cfg.person_class_id, [-1])
        keypoints = tf.reshape(x["keypoints"], [-1, cfg.num_keypoints, 3])
        rows = person_rows_first(matched, is_person, batch * cfg.keypoint_rows)
        indices, labelled = keypoint_targets(keypoints, tf.gather(flat_rois, rows), tf.gather(matched, rows),
                                             cfg.heatmap_size, gt_is_person=is_person)
        size = cfg.keypoint_roi_size
        keypoint_features = (mask_features if size == cfg.mask_roi_size  # same RoIs: cut once
                             else multilevel_roi_align_tf(fpn, fg_rois, cfg.levels, size, DEFAULT_SAMPLING_RATIO))
        keypoint_features = tf.gather(tf.reshape(keypoint_features, [batch * fg, size, size, -1]), rows)
        keypoint_logits = self.keypoint_head(keypoint_features, training=training)[KEYPOINT_LOGITS]
        result["keypoint_loss"] = losses.keypoint_loss(keypoint_logits, indices, labelled)
        return result

    def loss_weights(self) -> dict[str, float]:
        """:data:`LOSS_NAMES` -> weight of that term in the total loss (the config's, else 1)."""
        cfg = self.model_config
        weights = {"keypoint_loss": cfg.keypoint_loss_weight, "box_regression_loss": cfg.box_regression_loss_weight}
        return {name: float(weights.get(name, 1.0)) for name in LOSS_NAMES}

    def _total(self, terms: dict[str, tf.Tensor]) -> tf.Tensor:
        weights = self.loss_weights()
        return tf.add_n([terms[name] * weights[name] for name in LOSS_NAMES])

    def _log(self, total: tf.Tensor, terms: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for tracker, value in zip(self._trackers, (total, *(terms[name] for name in LOSS_NAMES))):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self._trackers}

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        seed_base = tf.cast(self.optimizer.iterations, tf.int32)
        with tf.GradientTape() as tape:
            terms = self.compute_losses(x, seed_base, training=True)
            total = self._total(terms)
        variables = self.trainable_variables
        gradients = tape.gradient(total, variables)
        self.optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
        return self._log(total, terms)

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        terms = self.compute_losses(x, tf.constant(EVAL_SEED, tf.int32), training=False)
        return self._log(self._total(terms), terms)
