"""Keypoint AP of one pose model under several PAF parser settings (the network runs once).

``python -m training.pose_parser_sweep --model exports/pose_fp32.tflite --data data/synth
--set smoothing_sigma=0,0.5 --set fill_missing=false,true`` runs the split through the model once,
keeps its heatmaps and PAFs, and parses them with every combination of the listed values of
``tfsp.postprocess.paf.PafParserConfig`` fields (the other fields as in the model's spec); it
prints COCO keypoint AP, AP50 and AP75 per combination, the spec's own settings marked. Use it to
choose the parser settings to put in a spec (``training.evaluate --spec`` scores an edited one).
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Sequence

from tfsp.cli import SuggestingParser, suggest
from tfsp.data.coco import CocoDataset, load_split
from tfsp.eval import IouType, evaluate_coco
from tfsp.postprocess.paf import PafParserConfig, parse_poses
from tfsp.runtime.pose import map_to_original, person_category_id
from tfsp.runtime.runner import Runner, open_runner
from tfsp.spec import ModelSpec, SpecError, Task
from tfsp.structures import Poses
from training.eval_tasks import keypoints_json
from training.evaluate import find_spec
from training.pose_diagnose import add_model_and_data_arguments, predictions

EXIT_ERROR = 2
SWEPT_TYPES = (bool, int, float)
"""Field types a ``--set`` may list values of (``limbs`` is not swept)."""
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_setting(text: str) -> tuple[str, tuple]:
    """``"field=v1,v2"`` -> ``(field, (v1, v2))``, each value converted to the field's type.

    Raises:
        ValueError: no ``=``, an unknown or unsweepable field, or a value of the wrong type.
    """
    name, equals, values = text.partition("=")
    # A field's type is its annotation: a string under postponed evaluation, else the type itself.
    fields = {field.name: getattr(field.type, "__name__", field.type) for field in dataclasses.fields(PafParserConfig)}
    kinds = {name: kind for name, kind in fields.items() if kind in {t.__name__ for t in SWEPT_TYPES}}
    if not equals or not values:
        raise ValueError(f"--set wants FIELD=V1,V2,..., got {text!r}")
    if name not in kinds:
        raise ValueError(f"--set: {name!r} is not a sweepable PafParserConfig field{suggest(name, list(kinds))}; "
                         f"fields: {', '.join(kinds)}")
    return name, tuple(_convert(value.strip(), kinds[name], name) for value in values.split(","))


def _convert(value: str, kind: str, name: str) -> bool | int | float:
    try:
        if kind == "bool":
            if value.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError(value)
            return value.lower() in TRUE_WORDS
        return int(value) if kind == "int" else float(value)
    except ValueError:
        raise ValueError(f"--set {name}: {value!r} is not a {kind}") from None


def sweep(runner: Runner, spec: ModelSpec, dataset: CocoDataset, settings: Sequence[tuple[str, tuple]],
          max_images: int | None = None) -> list[tuple[PafParserConfig, dict[str, float]]]:
    """COCO keypoint stats of every combination of ``settings`` applied to ``spec.paf``.

    Args:
        runner: the pose graph (run once per image).
        spec: its ModelSpec (task POSE).
        dataset: the split, with person keypoints.
        settings: ``(field, values)`` pairs, as from :func:`parse_setting`.
        max_images: first N images only (None: all).

    Returns:
        ``(parser config, stats)`` per combination, in ``itertools.product`` order; stats keyed as
        ``tfsp.eval.stat_names(IouType.KEYPOINTS)``.

    Raises:
        ValueError: not a pose spec, a combination the config rejects, or no person keypoints.
    """
    if spec.task is not Task.POSE:
        raise ValueError(f"a parser sweep needs a Task.POSE spec, got {spec.task}")
    names = [name for name, _ in settings]
    configs = [dataclasses.replace(spec.paf, **dict(zip(names, values)))
               for values in itertools.product(*(values for _, values in settings))]
    records = dataset.records[:max_images]
    category = person_category_id(spec)
    found: list[list[dict]] = [[] for _ in configs]
    for record, image, letterbox, heatmaps, pafs, _ in predictions(runner, spec, dataset, records):
        stride = spec.input_size / heatmaps.shape[0]
        height, width = image.shape[:2]
        for results, config in zip(found, configs):
            poses = parse_poses(heatmaps, pafs, config)
            keypoints = map_to_original(poses.keypoints, stride, letterbox, height, width)
            results.extend(Poses.create(keypoints, poses.scores).to_coco(record.image_id, category))
    ground_truth, image_ids = str(keypoints_json(dataset)), [record.image_id for record in records]
    return [(config, evaluate_coco(ground_truth, results, IouType.KEYPOINTS, image_ids=image_ids))
            for config, results in zip(configs, found)]


def main(argv: list[str] | None = None) -> int:
    """Runs the sweep CLI; returns the process exit code."""
    parser = SuggestingParser(prog="python -m training.pose_parser_sweep", description=__doc__.splitlines()[0])
    add_model_and_data_arguments(parser)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                        help="PafParserConfig field and the values to try (repeat for a grid)")
    args = parser.parse_args(argv)
    try:
        settings = [parse_setting(text) for text in args.set]
        spec = ModelSpec.from_json(args.spec or find_spec(args.model))
        rows = sweep(open_runner(args.model), spec, load_split(args.data, args.split), settings, args.max_images)
    except (FileNotFoundError, SpecError, ValueError) as error:
        print(f"parser sweep failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    names = [name for name, _ in settings]
    header = "".join(f"{name:>18}" for name in names)
    print(f"{header} {'AP':>6} {'AP50':>6} {'AP75':>6}")
    for config, stats in rows:
        values = "".join(f"{str(getattr(config, name)):>18}" for name in names)
        mark = "  (spec)" if config == spec.paf else ""
        print(f"{values} {stats['AP']:6.3f} {stats['AP50']:6.3f} {stats['AP75']:6.3f}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
