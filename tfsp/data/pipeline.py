"""tf.data input pipeline: records -> decoded, augmented, resized, padded batches.

Per example: read + decode (JPEG with the accurate integer DCT, like OpenCV), optional random
crop and horizontal flip (:mod:`tfsp.data.augment`), resize to the model input exactly as
:func:`tfsp.runtime.preprocess.preprocess_image` does (bilinear, half-pixel centres, no
antialias, top-left letterbox padded with ``LETTERBOX_PAD_VALUE``), optional photometric jitter,
then instances compacted (valid first) and padded to ``max_instances``.

Every example carries ``transform = [scale_x, scale_y, pad_x, pad_y]`` with
``x_input = x_orig * scale_x + pad_x`` (``scale_x < 0`` after a flip), so predictions map back
with :meth:`tfsp.runtime.preprocess.Letterbox.from_vector`. Masks, when requested, cover the
whole ``(S, S)`` input at ``mask_size`` resolution (soft float32 in [0, 1], 0 in padding).

Determinism: ``deterministic=True`` fixes every seed from ``config.seed`` and keeps element
order, so two pipelines built alike yield identical batches; each iteration (epoch) still
reshuffles and re-randomises, reproducibly. tf.data combines these op seeds with TensorFlow's
global seed, so that must match too (``training.trainer.make_train_dataset`` sets it from the
same seed). Otherwise seeds are random and training elements
may be reordered for speed; evaluation (``training=False``) always keeps record order. The data
set is not repeated.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfsp.data import augment
from tfsp.data.augment import AugmentConfig
from tfsp.data.coco import CocoDataset, record_masks
from tfsp.data.keypoints import NUM_KEYPOINTS
from tfsp.runtime.preprocess import LETTERBOX_PAD_VALUE, ResizeMode

DEFAULT_INPUT_SIZE = 256
DEFAULT_MAX_INSTANCES = 32
DEFAULT_BATCH_SIZE = 8
DEFAULT_MASK_SIZE = 64
SHUFFLE_BUFFER = 2048  # records; shuffling happens on small record slices, before decoding
DEPTH_MM_PER_METRE = 1000.0
SEMANTIC_PAD_LABEL = 0  # letterbox padding is background
DEPTH_PAD_METRES = 0.0  # 0 = no measurement; depth losses should ignore depth <= 0
CLASS_PAD = -1
JPEG_MAGIC = b"\xff\xd8"
NUM_AUGMENT_SEEDS = 3  # crop, flip, photometric

Example = dict[str, tf.Tensor]


@dataclass(frozen=True)
class PipelineConfig:
    """Input pipeline settings.

    Attributes:
        input_size: Model input side ``S`` in pixels.
        resize: Letterbox (aspect kept, top-left) or stretch.
        max_instances: ``M``, instances per image after padding/truncation.
        batch_size: Examples per batch (training drops the last partial batch).
        augment: Training augmentations, or None for none (never applied when not training).
        deterministic: Fixed seeds and element order (reproducible batches).
        with_masks: Add ``masks`` (M, mask_size, mask_size).
        mask_size: Mask resolution covering the whole input (>= 2).
        with_dense: Add ``semantic`` (S, S) int32 and ``depth`` (S, S) float32 metres.
        seed: Seed for shuffling and augmentation in deterministic mode.
    """

    input_size: int = DEFAULT_INPUT_SIZE
    resize: ResizeMode = ResizeMode.LETTERBOX
    max_instances: int = DEFAULT_MAX_INSTANCES
    batch_size: int = DEFAULT_BATCH_SIZE
    augment: AugmentConfig | None = None
    deterministic: bool = False
    with_masks: bool = False
    mask_size: int = DEFAULT_MASK_SIZE
    with_dense: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("input_size", "max_instances", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PipelineConfig.{name} must be positive, got {getattr(self, name)}")
        if self.mask_size < 2:
            raise ValueError(f"PipelineConfig.mask_size must be >= 2, got {self.mask_size}")


def _ragged(arrays: list[np.ndarray], inner: tuple[int, ...], dtype: type) -> tf.RaggedTensor:
    flat = np.concatenate([a.reshape((len(a),) + inner) for a in arrays]).astype(dtype)
    return tf.RaggedTensor.from_row_lengths(flat, np.array([len(a) for a in arrays], np.int64))


def _record_slices(dataset: CocoDataset, with_dense: bool) -> dict:
    records = dataset.records
    if not records:
        raise ValueError(f"{dataset.instances_json}: no usable images to build a pipeline from")
    if with_dense:
        for record in records:
            if record.semantic_path is None or record.depth_path is None:
                raise ValueError(f"with_dense=True but image {record.image_id} has no semantic/depth map")
    num_attributes = len(dataset.attribute_names)
    return {
        "index": np.arange(len(records), dtype=np.int64),
        "path": np.array([r.path for r in records]),
        "image_id": np.array([r.image_id for r in records], np.int64),
        "semantic_path": np.array([r.semantic_path or "" for r in records]),
        "depth_path": np.array([r.depth_path or "" for r in records]),
        "boxes_xyxy": _ragged([r.boxes_xyxy for r in records], (4,), np.float32),
        "class_ids": _ragged([r.class_ids for r in records], (), np.int32),
        "is_crowd": _ragged([r.is_crowd for r in records], (), np.bool_),
        "keypoints": _ragged([r.keypoints for r in records], (NUM_KEYPOINTS, 3), np.float32),
        "attributes": _ragged([r.attribute_ids for r in records], (num_attributes,), np.float32),
    }


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG (accurate integer DCT, as OpenCV) or PNG/BMP/GIF bytes to ``(H, W, 3)`` uint8 RGB."""
    return tf.cond(
        tf.strings.substr(data, 0, 2) == JPEG_MAGIC,
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )


def resized_size_tf(height: tf.Tensor, width: tf.Tensor, input_size: int, mode: ResizeMode) -> tuple:
    """TF twin of :func:`tfsp.runtime.preprocess.resized_size` (same integer rounding)."""
    if mode is ResizeMode.STRETCH:
        return tf.constant(input_size), tf.constant(input_size)
    longest = tf.maximum(height, width)
    new_h = tf.maximum(1, (2 * height * input_size + longest) // (2 * longest))
    new_w = tf.maximum(1, (2 * width * input_size + longest) // (2 * longest))
    return new_h, new_w


def _warp(image: tf.Tensor, window: tf.Tensor, flip: tf.Tensor, size: tuple, method: str) -> tf.Tensor:
    """Crops ``window`` [y0, x0, h, w], flips if ``flip``, resizes to ``size`` (h, w)."""
    image = tf.slice(image, [window[0], window[1], 0], [window[2], window[3], -1])
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    return tf.image.resize(image, tf.stack(size), method=method, antialias=False)


def _pad(image: tf.Tensor, size: int, value: float) -> tf.Tensor:
    shape = tf.shape(image)
    return tf.pad(image, [[0, size - shape[0]], [0, size - shape[1]], [0, 0]], constant_values=value)


def _resample_masks(masks: tf.Tensor, transform: tf.Tensor, content: tuple, config: PipelineConfig) -> tf.Tensor:
    """Samples ``(N, H, W)`` original-image masks onto the ``(mask_size,)*2`` grid over the input.

    Sample points are mask-pixel centres mapped through ``transform`` (crop and flip included);
    the source is edge-replicated by one pixel so borders behave like ``tf.image.resize``, and
    points outside the resized content (letterbox padding, cropped-away area) are 0.
    """
    size, scale = config.mask_size, config.input_size / config.mask_size
    source = tf.pad(tf.transpose(tf.cast(masks, tf.float32), [1, 2, 0]), [[1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    padded_shape = tf.cast(tf.shape(source)[:2] - 1, tf.float32)
    centres = (tf.range(size, dtype=tf.float32) + 0.5) * scale
    ends = tf.stack([centres[0], centres[-1]])
    ys = ((ends - transform[3]) / transform[1] + 0.5) / padded_shape[0]  # +0.5: -0.5 centre, +1 edge pad
    xs = ((ends - transform[2]) / transform[0] + 0.5) / padded_shape[1]
    box = tf.stack([ys[0], xs[0], ys[1], xs[1]])[None]
    sampled = tf.image.crop_and_resize(source[None], box, [0], [size, size], method="bilinear")[0]
    inside = (centres[:, None] < tf.cast(content[0], tf.float32)) & (centres[None, :] < tf.cast(content[1], tf.float32))
    return tf.transpose(sampled * tf.cast(inside, tf.float32)[..., None], [2, 0, 1])


def _compact(example: Example, valid: tf.Tensor, max_instances: int) -> Example:
    """Moves valid instances first, truncates/pads every per-instance field to ``max_instances``."""
    order = tf.argsort(tf.cast(tf.logical_not(valid), tf.int32), stable=True)[:max_instances]
    count = tf.minimum(tf.reduce_sum(tf.cast(valid, tf.int32)), max_instances)
    keep = tf.range(max_instances) < count
    out = dict(example)
    for key, pad in (("boxes_xyxy", 0.0), ("class_ids", CLASS_PAD), ("is_crowd", False), ("keypoints", 0.0),
                     ("attributes", 0.0), ("masks", 0.0)):
        if key not in example:
            continue
        taken = tf.gather(example[key], order)
        rank = len(example[key].shape)
        taken = tf.pad(taken, [[0, max_instances - tf.shape(taken)[0]]] + [[0, 0]] * (rank - 1), constant_values=pad)
        keep_b = tf.reshape(keep, [max_instances] + [1] * (rank - 1))
        out[key] = tf.where(keep_b, taken, tf.constant(pad, dtype=taken.dtype))
        out[key].set_shape([max_instances] + example[key].shape[1:].as_list())
    out["num_instances"] = count
    return out


def _example_fn(dataset: CocoDataset, config: PipelineConfig, training: bool) -> Callable:
    aug = config.augment if training else None
    size = config.input_size

    def load(item: dict, seed: tf.Tensor) -> Example:
        image = decode_rgb(tf.io.read_file(item["path"]))
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        boxes, keypoints = item["boxes_xyxy"], item["keypoints"]
        valid = tf.ones_like(item["class_ids"], tf.bool)
        window, flip = tf.stack([0, 0, height, width]), tf.constant(False)
        if aug is not None:
            seeds = tf.random.experimental.stateless_split(seed, NUM_AUGMENT_SEEDS)
            window = augment.sample_crop_window(seeds[0], height, width, aug)
            flip = augment.sample_flip(seeds[1], aug.flip_probability)
            boxes, keypoints, valid = augment.crop_instances(boxes, keypoints, valid, window, aug.min_visible_fraction)
            boxes = tf.where(flip, augment.flip_boxes_xyxy(boxes, window[3]), boxes)
            keypoints = tf.where(flip, augment.flip_keypoints(keypoints, window[3]), keypoints)
        content = resized_size_tf(window[2], window[3], size, config.resize)
        scale = tf.cast(tf.stack(content[::-1]), tf.float32) / tf.cast(tf.stack([window[3], window[2]]), tf.float32)
        pixels = _warp(image, window, flip, content, "bilinear")
        if aug is not None:
            pixels = augment.photometric(pixels, seeds[2], aug)
        origin = tf.cast(tf.stack([window[1], window[0]]), tf.float32)
        scale_x = tf.where(flip, -scale[0], scale[0])  # original -> input, flip included
        offset_x = tf.where(flip, (origin[0] + tf.cast(window[3], tf.float32)) * scale[0], 0.0 - origin[0] * scale[0])
        example = {
            "image": tf.ensure_shape(_pad(pixels, size, LETTERBOX_PAD_VALUE), [size, size, 3]),
            "boxes_xyxy": boxes * tf.tile(scale, [2]),
            "class_ids": item["class_ids"],
            "is_crowd": item["is_crowd"],
            "keypoints": tf.concat([keypoints[..., :2] * scale, keypoints[..., 2:]], axis=-1),
            "attributes": item["attributes"],
            "image_id": item["image_id"],
            "transform": tf.stack([scale_x, scale[1], offset_x, 0.0 - origin[1] * scale[1]]),
        }
        if config.with_masks:
            masks = tf.numpy_function(lambda i: record_masks(dataset.records[int(i)]), [item["index"]], tf.uint8,
                                      stateful=False)
            masks = tf.ensure_shape(masks, [None, None, None])
            example["masks"] = _resample_masks(masks, example["transform"], content, config)
        if config.with_dense:
            semantic = tf.io.decode_png(tf.io.read_file(item["semantic_path"]), channels=1)
            semantic = _pad(_warp(semantic, window, flip, content, "nearest"), size, SEMANTIC_PAD_LABEL)
            example["semantic"] = tf.ensure_shape(tf.cast(semantic[..., 0], tf.int32), [size, size])
            depth = tf.io.decode_png(tf.io.read_file(item["depth_path"]), channels=1, dtype=tf.uint16)
            depth = tf.cast(_warp(depth, window, flip, content, "nearest"), tf.float32) / DEPTH_MM_PER_METRE
            example["depth"] = tf.ensure_shape(_pad(depth, size, DEPTH_PAD_METRES)[..., 0], [size, size])
        return _compact(example, valid, config.max_instances)

    return load


def make_dataset(
    dataset: CocoDataset,
    config: PipelineConfig,
    training: bool,
    target_fn: Callable[[Example], Example] | None = None,
) -> tf.data.Dataset:
    """Builds the batched input pipeline over a loaded split.

    Args:
        dataset: Loaded split (:func:`tfsp.data.coco.load_split`).
        config: Pipeline settings.
        training: Shuffle, apply ``config.augment`` and drop the last partial batch; when False,
            examples come in record order and the last partial batch is kept.
        target_fn: Optional per-example ``fn(example) -> example`` mapped before batching.

    Returns:
        A ``tf.data.Dataset`` of dict batches (B = batch size, S = input size,
        M = max_instances, A = attributes): ``image`` (B,S,S,3) float32 RGB 0..255;
        ``boxes_xyxy`` (B,M,4) float32 input pixels; ``class_ids`` (B,M) int32, -1 padding;
        ``is_crowd`` (B,M) bool; ``keypoints`` (B,M,17,3) float32 input pixels + visibility;
        ``attributes`` (B,M,A) float32; ``num_instances`` (B,) int32; ``image_id`` (B,) int64;
        ``transform`` (B,4) float32 ``[scale_x, scale_y, pad_x, pad_y]`` original -> input;
        optionally ``masks`` (B,M,mask_size,mask_size) float32, ``semantic`` (B,S,S) int32 and
        ``depth`` (B,S,S) float32 metres.
    """
    slices = _record_slices(dataset, config.with_dense)
    seed = config.seed if config.deterministic else None
    data = tf.data.Dataset.from_tensor_slices(slices)
    if training:
        data = data.shuffle(min(len(dataset), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    data = tf.data.Dataset.zip((data, randoms))
    ordered = config.deterministic or not training
    data = data.map(_example_fn(dataset, config, training), num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    if target_fn is not None:
        data = data.map(target_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    data = data.batch(config.batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = ordered
    return data.with_options(options)
