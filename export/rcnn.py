"""Export of a split-graph Mask R-CNN: stage 1 and every head as builtin-only TFLite, one ModelSpec.

A run holds ``model.keras`` (stage 1) and ``model.{head}.keras`` per head of ``spec.rcnn.heads``
(``tfsp.runtime.graph_chain.head_path``). The export writes, each atomically::

    OUT/NAME.tflite  OUT/NAME.box_head.tflite  OUT/NAME.mask_head.tflite  [OUT/NAME.keypoint_head.tflite]
    OUT/NAME.json    (one ModelSpec: stage 1 in inputs/outputs, each head in rcnn.heads)

int8 calibration: stage 1 on the calibration images (as every image graph); each head on the RoI
features it receives when the float Keras chain runs on those images (``MaskRcnnPipeline`` over
``KerasRunner``s, recording what reaches each head's ``run_features``). A head that receives nothing
(an untrained model detects nothing) calibrates on RoIAlign features of random boxes on the images'
FPN maps instead; the result names such heads.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import numpy as np

from export.convert import QUANT_SETTINGS, ExportError, check_converted, convert_model
from tfsp import __version__
from tfsp.fileio import write_atomic
from tfsp.postprocess.rcnn import FPN_OUTPUT
from tfsp.postprocess.roi_align import multilevel_roi_align
from tfsp.runtime.graph_chain import BOX_HEAD_GRAPH, KEYPOINT_HEAD_GRAPH, MASK_HEAD_GRAPH, GraphChain, head_path
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.mask_rcnn import MaskRcnnPipeline
from tfsp.runtime.tflite_runner import TFLiteRunner
from tfsp.spec import ModelSpec, QuantMode
from tfsp.spec_rcnn import GraphInfo

HEAD_CALIBRATION_SAMPLES = 256
"""At most this many RoI feature samples calibrate each head (a seeded random subset)."""

FALLBACK_BOXES_PER_IMAGE = 16
"""Random boxes per calibration image when a head received no features from the float chain."""

FALLBACK_BOX_SIDE_FRACTION = (1 / 16, 1 / 2)
"""Side range of the random fallback boxes, as fractions of the input side S."""

CALIBRATION_SEED = 0
"""Seed of the feature subset and of the fallback boxes."""


@dataclasses.dataclass(frozen=True)
class ChainExportResult:
    """Files written by ``export_chain``.

    Attributes:
        tflite_paths: graph name (``"stage1"`` first, then the heads) -> written ``.tflite`` file.
        sizes_bytes: graph name -> file size in bytes.
        spec_path: the ``ModelSpec`` JSON.
        spec: the written spec (every graph's converted TensorInfo).
        fallback_heads: heads calibrated on random-box features (int8 only).
    """

    tflite_paths: dict[str, Path]
    sizes_bytes: dict[str, int]
    spec_path: Path
    spec: ModelSpec
    fallback_heads: tuple[str, ...]


STAGE1 = "stage1"
"""Key of the main graph in ``ChainExportResult``."""


class _RecordingRunner:
    """Wraps a feature runner and keeps a copy of every batch passed to ``run_features``."""

    def __init__(self, runner: KerasRunner) -> None:
        self._runner = runner
        self.batches: list[np.ndarray] = []
        self.input_size = runner.input_size
        self.output_names = runner.output_names

    def run_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(np.array(features, np.float32))
        return self._runner.run_features(features)


def load_chain_models(model_path: str | os.PathLike, spec: ModelSpec) -> tuple[keras.Model, dict[str, keras.Model]]:
    """Loads stage 1 and every head of ``spec.rcnn.heads`` (``compile=False``).

    Raises:
        FileNotFoundError: a head file of the spec is missing beside ``model_path``.
    """
    heads = {}
    for name in spec.rcnn.head_names:
        path = head_path(model_path, name)
        if not path.is_file():
            raise FileNotFoundError(f"no {path}: the spec's chain has a {name!r} graph (training saves it beside "
                                    f"{Path(model_path).name})")
        heads[name] = keras.models.load_model(path, compile=False)
    return keras.models.load_model(model_path, compile=False), heads


def _roi_size(spec: ModelSpec, head: str) -> int:
    chain = spec.rcnn
    return {BOX_HEAD_GRAPH: chain.box_roi_size, MASK_HEAD_GRAPH: chain.mask_roi_size,
            KEYPOINT_HEAD_GRAPH: chain.keypoint_roi_size}[head]


def _random_box_features(stage1: KerasRunner, spec: ModelSpec, head: str, images: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
    """RoIAlign features of random boxes on each image's FPN maps: (N * boxes, s, s, F) float32."""
    size, levels = spec.input_size, spec.rcnn.anchors.levels
    low, high = (fraction * size for fraction in FALLBACK_BOX_SIDE_FRACTION)
    samples = []
    for image in images:
        outputs = stage1(image[np.newaxis])
        maps = {level: outputs[FPN_OUTPUT.format(level)][0] for level in levels}
        sides = rng.uniform(low, high, (FALLBACK_BOXES_PER_IMAGE, 2))
        corners = rng.uniform(0.0, 1.0, (FALLBACK_BOXES_PER_IMAGE, 2)) * (size - sides)
        boxes = np.concatenate([corners, corners + sides], axis=1).astype(np.float32)
        samples.append(multilevel_roi_align(maps, boxes, _roi_size(spec, head), spec.rcnn.sampling_ratio))
    return np.concatenate(samples)


def head_calibration_features(stage1: keras.Model, heads: dict[str, keras.Model], spec: ModelSpec,
                              images: np.ndarray, max_samples: int = HEAD_CALIBRATION_SAMPLES
                              ) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """The RoI features each head receives when the float Keras chain runs on ``images``.

    Args:
        stage1: the float stage-1 model.
        heads: head name -> float head model (those of ``spec.rcnn.heads``).
        spec: the float spec.
        images: (N, S, S, 3) float32 RGB 0..255 preprocessed calibration images.
        max_samples: at most this many samples per head (seeded random subset).

    Returns:
        ``(features, fallback_heads)``: head name -> (n, s, s, F) float32 samples, and the heads
        that received nothing and got RoIAlign features of random boxes instead.
    """
    stage1_runner = KerasRunner(stage1)
    recorders = {name: _RecordingRunner(KerasRunner(model)) for name, model in heads.items()}
    pipeline = MaskRcnnPipeline.from_runner(GraphChain(stage1_runner, recorders), spec)
    for image in images:
        pipeline(image)
    rng = np.random.default_rng(CALIBRATION_SEED)
    features, fallback = {}, []
    for name, recorder in recorders.items():
        values = np.concatenate(recorder.batches) if recorder.batches else None
        if values is None:
            values = _random_box_features(stage1_runner, spec, name, images, rng)
            fallback.append(name)
        if len(values) > max_samples:
            values = values[np.sort(rng.choice(len(values), max_samples, replace=False))]
        features[name] = values
    return features, tuple(fallback)


def _converted_head(graph: GraphInfo, runner: TFLiteRunner) -> GraphInfo:
    """The head's GraphInfo from the converted graph; names and per-sample shapes must match the spec."""
    (expected_input,), (converted_input,) = graph.inputs, runner.inputs
    if converted_input.shape[1:] != expected_input.shape[1:]:
        raise ExportError(f"{graph.name}: converted input shape {converted_input.shape[1:]} per RoI, the spec says "
                          f"{expected_input.shape[1:]}")
    by_name = {info.name: info for info in runner.outputs}
    if set(by_name) != set(graph.output_names):
        raise ExportError(f"{graph.name}: converted outputs {sorted(by_name)} != spec outputs "
                          f"{sorted(graph.output_names)}")
    for expected in graph.outputs:
        if by_name[expected.name].shape[1:] != expected.shape[1:]:
            raise ExportError(f"{graph.name}: output {expected.name!r} has shape {by_name[expected.name].shape[1:]} "
                              f"per RoI, the spec says {expected.shape[1:]}")
    return GraphInfo(graph.name, runner.inputs, tuple(by_name[name] for name in graph.output_names))


def export_chain(stage1: keras.Model, heads: dict[str, keras.Model], spec: ModelSpec, mode: QuantMode,
                 out_dir: str | os.PathLike, name: str, calibration_images: np.ndarray | None = None
                 ) -> ChainExportResult:
    """Converts stage 1 and every head; writes ``NAME.tflite``, ``NAME.{head}.tflite`` and ``NAME.json``.

    Args:
        stage1: the float stage-1 model the spec's inputs/outputs describe.
        heads: head name -> float model, for every head of ``spec.rcnn.heads``.
        spec: the float instance-segmentation spec.
        mode: quantisation mode, the same for every graph.
        out_dir: output directory (created).
        name: file stem.
        calibration_images: (N, S, S, 3) float32 0..255, required for INT8.

    Returns:
        The written files and the spec (every graph's converted TensorInfo).

    Raises:
        ExportError: a graph does not convert to builtin ops or does not fit the spec.
    """
    if spec.rcnn is None:
        raise ExportError(f"export_chain needs an instance-segmentation spec, got task {spec.task.name}")
    missing = sorted(set(spec.rcnn.head_names) - set(heads))
    if missing:
        raise ExportError(f"no model for the spec's heads {missing}")
    features, fallback = {}, ()
    if QUANT_SETTINGS[mode].full_integer:
        if calibration_images is None or len(calibration_images) == 0:
            raise ExportError(f"--quant {mode.value} needs calibration images (pass --data DIR)")
        features, fallback = head_calibration_features(stage1, heads, spec, calibration_images)
    data = {STAGE1: convert_model(stage1, mode, calibration_images)}
    outputs = check_converted(TFLiteRunner(data[STAGE1]), spec, mode)
    inputs = TFLiteRunner(data[STAGE1]).inputs
    graphs = []
    for graph in spec.rcnn.heads:
        data[graph.name] = convert_model(heads[graph.name], mode, features.get(graph.name))
        graphs.append(_converted_head(graph, TFLiteRunner(data[graph.name])))
    exported = dataclasses.replace(spec, inputs=inputs, outputs=outputs, quantization=mode, tfsp_version=__version__,
                                   rcnn=dataclasses.replace(spec.rcnn, heads=tuple(graphs)))
    main_path = Path(out_dir) / f"{name}.tflite"
    paths = {graph: write_atomic(main_path if graph == STAGE1 else head_path(main_path, graph), values)
             for graph, values in data.items()}
    spec_path = exported.to_json(Path(out_dir) / f"{name}.json")
    return ChainExportResult(paths, {graph: len(values) for graph, values in data.items()}, spec_path, exported,
                             fallback)
