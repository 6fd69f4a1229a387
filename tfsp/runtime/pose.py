"""Bottom-up pose pipeline: RGB image -> preprocess -> runner -> PAF parsing -> original pixels.

The same code runs on the server (``KerasRunner``) and the device
(``TFLiteRunner``); it imports neither TensorFlow nor Keras itself, so it is
device-safe whenever the runner is.

Coordinates: the parser (``tfsp.postprocess.paf.parse_poses``) returns map
coordinates u (the centre of cell j is u = j + 0.5); with F the side of the
heatmaps and S the input side, the stride is s = S / F and the input pixel
coordinate is u * s (``tfsp.data.pose_fields`` renders targets on that grid).
The letterbox then maps input pixels to pixels of the original image.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tfsp.postprocess.paf import HEATMAPS, PAFS, parse_poses
from tfsp.runtime.detection import ImageRecordLike
from tfsp.runtime.preprocess import Letterbox, preprocess_image, read_image_rgb
from tfsp.runtime.runner import Runner, check_pipeline_runner
from tfsp.runtime.timing import StageClock, StageTimings
from tfsp.spec import HEATMAP_CHANNELS, ModelSpec, Task
from tfsp.structures import Poses

POSE_OUTPUT_NAMES = (HEATMAPS, PAFS)
"""Graph outputs the pose pipeline reads."""

PERSON_CLASS_NAME = "person"
"""Name of the spec class whose COCO category id the pose results carry."""


def person_category_id(spec: ModelSpec) -> int:
    """COCO category id of the class named ``PERSON_CLASS_NAME`` in ``spec``.

    Raises:
        ValueError: the spec has no such class.
    """
    if PERSON_CLASS_NAME not in spec.class_names:
        raise ValueError(f"a pose spec needs a class named {PERSON_CLASS_NAME!r}; it has {list(spec.class_names)}")
    return int(spec.category_ids[spec.class_names.index(PERSON_CLASS_NAME)])


class PosePipeline:
    """Runs a bottom-up pose graph on full images and returns poses in original pixels.

    Args:
        runner: any ``Runner`` whose outputs include ``heatmaps`` (1, F, F, 18) and
            ``pafs`` (1, F, F, 2L).
        spec: the model's ``ModelSpec`` (task POSE; input size, resize mode and the
            PAF parser settings are taken from it; it must have a ``"person"`` class).

    Raises:
        ValueError: spec and runner disagree (task, input size, output names), or the
            spec has no person class.
    """

    def __init__(self, runner: Runner, spec: ModelSpec) -> None:
        check_pipeline_runner("PosePipeline", runner, spec, Task.POSE, POSE_OUTPUT_NAMES)
        self._runner = runner
        self._spec = spec
        self._category_id = person_category_id(spec)

    @property
    def spec(self) -> ModelSpec:
        """The model spec."""
        return self._spec

    @property
    def category_id(self) -> int:
        """COCO category id of the person class (what ``pose_coco`` writes)."""
        return self._category_id

    def __call__(self, image_rgb: np.ndarray) -> Poses:
        """Finds the people in one image.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image; not modified.

        Returns:
            ``Poses``: keypoints (N, 17, 3) float32 ``[x, y, score]`` with x, y in
            continuous pixels of ``image_rgb`` (pixel centres at +0.5), clipped to
            ``[0, W] x [0, H]``; absent keypoints have score 0 and x = y = 0. Person
            scores as ``parse_poses`` defines them.
        """
        return self.detect_timed(image_rgb)[0]

    def detect_timed(self, image_rgb: np.ndarray) -> tuple[Poses, StageTimings]:
        """Like ``__call__`` but also returns the per-stage wall-clock timings."""
        clock = StageClock()
        image, letterbox = preprocess_image(image_rgb, self._spec.input_size, self._spec.resize_mode)
        clock.mark()
        outputs = self._runner(image[np.newaxis])
        clock.mark()
        heatmaps, pafs = _check_maps(outputs[HEATMAPS][0], outputs[PAFS][0], 2 * len(self._spec.paf.limbs))
        poses = parse_poses(heatmaps, pafs, self._spec.paf)
        stride = self._spec.input_size / heatmaps.shape[0]
        height, width = image_rgb.shape[:2]
        result = Poses.create(map_to_original(poses.keypoints, stride, letterbox, height, width), poses.scores)
        return result, clock.timings()


def _check_maps(heatmaps: np.ndarray, pafs: np.ndarray, paf_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Checks one image's maps: square, same grid, the channel counts the spec says."""
    heatmaps, pafs = np.asarray(heatmaps, np.float32), np.asarray(pafs, np.float32)
    side = heatmaps.shape[0] if heatmaps.ndim == 3 else -1
    if heatmaps.shape != (side, side, HEATMAP_CHANNELS) or pafs.shape != (side, side, paf_channels):
        raise ValueError(f"pose outputs must be heatmaps (F, F, {HEATMAP_CHANNELS}) and pafs (F, F, {paf_channels}) "
                         f"per image, got {heatmaps.shape} and {pafs.shape}")
    return heatmaps, pafs


def map_to_original(keypoints: np.ndarray, stride: float, letterbox: Letterbox, height: int,
                    width: int) -> np.ndarray:
    """Maps parsed keypoints from map coordinates to original-image pixels.

    Args:
        keypoints: (N, 17, 3) float32 ``[u, v, score]`` in map coordinates (cell j centre
            at j + 0.5); score 0 marks an absent keypoint. Not modified.
        stride: input pixels per map cell (S / F).
        letterbox: the preprocessing transform of the image.
        height: original image height in pixels.
        width: original image width in pixels.

    Returns:
        (N, 17, 3) float32 ``[x, y, score]``: x, y in original pixels clipped to
        ``[0, width] x [0, height]``; absent keypoints keep x = y = 0 and score 0.
    """
    keypoints = np.asarray(keypoints, np.float32)
    points = letterbox.to_original_keypoints(keypoints * np.array([stride, stride, 1.0], np.float32))
    xy = np.clip(points[..., :2], 0.0, np.array([width, height], np.float32))
    found = keypoints[..., 2:] > 0
    return np.concatenate([np.where(found, xy, 0.0), keypoints[..., 2:]], axis=-1).astype(np.float32)


def pose_coco(pipeline: PosePipeline, records: Iterable[ImageRecordLike]) -> tuple[list[dict], StageTimings]:
    """Runs every image of a COCO split through the pose pipeline.

    Args:
        pipeline: the pose pipeline.
        records: images to run (e.g. ``load_split(root, "val").records``).

    Returns:
        ``(results, mean_timings)``: COCO keypoint result dicts ``{"image_id",
        "category_id", "keypoints": [x, y, v] * 17 (pixels; v = 2 found, 0 absent),
        "score"}`` for ``tfsp.eval`` (``IouType.KEYPOINTS``), with the person class's
        category id from the spec; and the per-stage mean timings over the images.

    Raises:
        FileNotFoundError: a missing image file.
        ValueError: an undecodable image file.
    """
    results: list[dict] = []
    timings = []
    for record in records:
        poses, timing = pipeline.detect_timed(read_image_rgb(record.path))
        results.extend(poses.to_coco(record.image_id, pipeline.category_id))
        timings.append(timing)
    return results, StageTimings.mean(timings)
