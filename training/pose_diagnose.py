"""Which pose output limits keypoint AP: predicted maps vs ground-truth fields swapped in.

``python -m training.pose_diagnose --model exports/pose_fp32.tflite --data data/synth`` runs the
split through the model and parses four combinations with the model's own parser settings:
the predicted heatmaps and PAFs (what ``training.evaluate`` scores), the ground-truth heatmaps
with the predicted PAFs, the predicted heatmaps with the ground-truth PAFs, and both ground
truth (the ceiling of the map resolution and the parser). Ground truth is rendered by
``tfsp.data.pose_fields`` at the model's map size from the split's labelled people. With
``--per-keypoint`` it also prints, per keypoint type, how far the predicted heatmap peaks lie from
the labels (median and 90th percentile in input pixels, fraction beyond one map cell).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from tfsp.cli import SuggestingParser, positive_int
from tfsp.data.coco import CocoDataset, ImageRecord, load_split
from tfsp.data.keypoints import KEYPOINT_NAMES
from tfsp.data.pose_fields import DEFAULT_LIMB_WIDTH_PX, DEFAULT_SIGMA_PX, render_heatmaps, render_pafs
from tfsp.eval import IouType, evaluate_coco
from tfsp.postprocess.paf import HEATMAPS, PAFS, find_peaks, parse_poses
from tfsp.runtime.pose import map_to_original, person_category_id
from tfsp.runtime.preprocess import Letterbox, preprocess_image, read_image_rgb
from tfsp.runtime.runner import Runner, open_runner
from tfsp.spec import ModelSpec, SpecError, Task
from tfsp.structures import Poses
from training.eval_tasks import keypoints_json
from training.evaluate import find_spec

COMBINATIONS = ("predicted", "gt_heatmaps", "gt_pafs", "gt_both")
"""Rows of the report: which of (heatmaps, pafs) come from the ground truth."""
EXIT_ERROR = 2
PERCENTILE = 90  # the tail reported by `peak_errors`


def diagnose(runner: Runner, spec: ModelSpec, dataset: CocoDataset, max_images: int | None = None,
             sigma_px: float = DEFAULT_SIGMA_PX, limb_width_px: float = DEFAULT_LIMB_WIDTH_PX) -> dict[str, dict]:
    """COCO keypoint stats (name -> value) for each of `COMBINATIONS`.

    Args:
        runner: the pose graph.
        spec: its ModelSpec (task POSE).
        dataset: the split, with person keypoints.
        max_images: first N images only (None: all).
        sigma_px: Gaussian sigma of the rendered heatmaps, input pixels.
        limb_width_px: half-width of the rendered PAF bands, input pixels.

    Returns:
        ``{combination: stats}`` with the keys of ``tfsp.eval.stat_names(IouType.KEYPOINTS)``.

    Raises:
        ValueError: not a pose spec, or the split has no person-keypoints JSON.
    """
    if spec.task is not Task.POSE:
        raise ValueError(f"pose diagnosis needs a Task.POSE spec, got {spec.task}")
    ground_truth = str(keypoints_json(dataset))
    category = person_category_id(spec)
    records = dataset.records[:max_images]
    results: dict[str, list[dict]] = {name: [] for name in COMBINATIONS}
    for record, image, letterbox, heatmaps, pafs, people in predictions(runner, spec, dataset, records):
        size = heatmaps.shape[0]
        stride = spec.input_size / size
        true_heatmaps = render_heatmaps(people, size, stride, sigma_px)
        true_pafs = render_pafs(people, size, stride, limb_width_px, spec.paf.limbs)
        maps = {"predicted": (heatmaps, pafs), "gt_heatmaps": (true_heatmaps, pafs),
                "gt_pafs": (heatmaps, true_pafs), "gt_both": (true_heatmaps, true_pafs)}
        height, width = image.shape[:2]
        for name, (hm, paf) in maps.items():
            poses = parse_poses(hm, paf, spec.paf)
            original = Poses.create(map_to_original(poses.keypoints, stride, letterbox, height, width), poses.scores)
            results[name].extend(original.to_coco(record.image_id, category))
    image_ids = [record.image_id for record in records]
    return {name: evaluate_coco(ground_truth, found, IouType.KEYPOINTS, image_ids=image_ids)
            for name, found in results.items()}


def predictions(runner: Runner, spec: ModelSpec, dataset: CocoDataset, records: Sequence[ImageRecord]
                 ) -> Iterator[tuple[ImageRecord, np.ndarray, Letterbox, np.ndarray, np.ndarray, np.ndarray]]:
    """Per record: (record, image, letterbox, heatmaps (F, F, 18), PAFs (F, F, 2L), people (P, 17, 3) input px)."""
    person = list(dataset.category_ids).index(person_category_id(spec))
    for record in records:
        image = read_image_rgb(record.path)
        inputs, letterbox = preprocess_image(image, spec.input_size, spec.resize_mode)
        outputs = runner(inputs[np.newaxis])
        people = record.keypoints[(record.class_ids == person) & ~record.is_crowd]
        people = np.concatenate([letterbox.to_input_xy(people[..., :2]), people[..., 2:]], axis=-1)
        yield (record, image, letterbox, np.asarray(outputs[HEATMAPS][0], np.float32),
               np.asarray(outputs[PAFS][0], np.float32), people)


@dataclasses.dataclass(frozen=True)
class PeakError:
    """How far one keypoint type's predicted peaks lie from its labelled keypoints.

    Attributes:
        count: labelled keypoints of this type (v > 0) in the images.
        median_px: median distance, input pixels, from each to the nearest predicted peak of its
            type (inf where the type has no peak in the image).
        p90_px: 90th percentile of the same distances (the next higher one, not interpolated).
        beyond_one_cell: fraction of the keypoints whose nearest peak is more than one map cell
            (the stride) away, or missing.
    """

    count: int
    median_px: float
    p90_px: float
    beyond_one_cell: float


def peak_errors(runner: Runner, spec: ModelSpec, dataset: CocoDataset, max_images: int | None = None
                ) -> dict[str, PeakError]:
    """Localisation of the predicted heatmap peaks, per keypoint type (a finer view than AP).

    Peaks are found as the parser finds them (``tfsp.postprocess.paf.find_peaks`` with the
    spec's settings, sub-cell refined).

    Args:
        runner: the pose graph.
        spec: its ModelSpec (task POSE).
        dataset: the split, with person keypoints.
        max_images: first N images only (None: all).

    Returns:
        ``{keypoint name: PeakError}`` in COCO keypoint order (types never labelled are left out).

    Raises:
        ValueError: not a pose spec.
    """
    if spec.task is not Task.POSE:
        raise ValueError(f"pose diagnosis needs a Task.POSE spec, got {spec.task}")
    distances: list[list[float]] = [[] for _ in KEYPOINT_NAMES]
    stride = float(spec.input_size)
    for _, _, _, heatmaps, _, people in predictions(runner, spec, dataset, dataset.records[:max_images]):
        stride = spec.input_size / heatmaps.shape[0]
        types, xy, _ = find_peaks(heatmaps, spec.paf)
        for kind in range(len(KEYPOINT_NAMES)):
            labelled = people[people[:, kind, 2] > 0, kind, :2]  # (N, 2) input px
            peaks = xy[types == kind] * stride  # (P, 2) input px
            if not len(peaks):
                distances[kind].extend([np.inf] * len(labelled))
                continue
            gaps = np.linalg.norm(labelled[:, None] - peaks[None], axis=-1)  # (N, P)
            distances[kind].extend(gaps.min(axis=1).tolist())
    return {name: PeakError(len(found), float(np.median(found)),
                            float(np.percentile(found, PERCENTILE, method="higher")),
                            float(np.mean(np.asarray(found) > stride)))
            for name, found in zip(KEYPOINT_NAMES, distances) if found}


def add_model_and_data_arguments(parser: argparse.ArgumentParser,
                                 model_help: str = "pose model: .keras or .tflite") -> None:
    """``--model``, ``--spec``, ``--data``, ``--split`` and ``--max-images``, as the diagnosis tools share them."""
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--spec", default=None, help="ModelSpec JSON (default: found beside the model)")
    parser.add_argument("--data", default="data/synth", help="COCO-layout data root (default data/synth)")
    parser.add_argument("--split", default="val", help="split (default val)")
    parser.add_argument("--max-images", type=positive_int, default=None, help="first N images only")


def main(argv: list[str] | None = None) -> int:
    """Runs the diagnosis CLI; returns the process exit code."""
    parser = SuggestingParser(prog="python -m training.pose_diagnose", description=__doc__.splitlines()[0])
    add_model_and_data_arguments(parser)
    parser.add_argument("--per-keypoint", action="store_true",
                        help="also print how far the predicted peaks lie from the labels, per keypoint type")
    parser.add_argument("--sigma-px", type=float, default=DEFAULT_SIGMA_PX,
                        help=f"rendered heatmap sigma, input pixels (default {DEFAULT_SIGMA_PX})")
    args = parser.parse_args(argv)
    try:
        spec = ModelSpec.from_json(args.spec or find_spec(args.model))
        runner, dataset = open_runner(args.model), load_split(args.data, args.split)
        stats = diagnose(runner, spec, dataset, args.max_images, args.sigma_px)
        errors = peak_errors(runner, spec, dataset, args.max_images) if args.per_keypoint else {}
    except (FileNotFoundError, SpecError, ValueError) as error:
        print(f"pose diagnosis failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{'maps':<12} {'AP':>6} {'AP50':>6} {'AP75':>6}")
    for name, values in stats.items():
        print(f"{name:<12} {values['AP']:6.3f} {values['AP50']:6.3f} {values['AP75']:6.3f}")
    if errors:
        print(f"\npredicted peaks vs labelled keypoints (input px; 'far' = beyond one map cell or no peak)")
        print(f"{'keypoint':<15} {'count':>6} {'median':>7} {'p90':>7} {'far':>6}")
        for name, error in errors.items():
            print(f"{name:<15} {error.count:6d} {error.median_px:7.2f} {error.p90_px:7.2f} "
                  f"{error.beyond_one_cell:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
