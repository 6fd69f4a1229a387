"""One interface for every graph runtime: images in, raw outputs by name out.

``KerasRunner`` (server, ``tfsp.runtime.keras_runner``) and ``TFLiteRunner``
(device, ``tfsp.runtime.tflite_runner``) both satisfy ``Runner``, so pipelines
and evaluation never know which one they hold. ``open_runner`` picks one by file
extension and imports the Keras runner only for ``.keras`` files, so this module
stays device-safe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from tfsp.runtime.graph_chain import BOX_HEAD_GRAPH, HEAD_GRAPHS, GraphChain, head_path
from tfsp.spec import ModelSpec, Task

KERAS_SUFFIX = ".keras"
TFLITE_SUFFIX = ".tflite"
IMAGE_CHANNELS = 3


@runtime_checkable
class Runner(Protocol):
    """A graph that maps a batch of images to raw outputs by name.

    Graphs whose single input is not an image (e.g. Mask R-CNN heads on RoI
    features) are run with the runners' ``run_features`` instead, which is not
    part of this protocol.

    Attributes:
        input_size: square input side S in pixels; None when the graph's
            input is not an image.
        output_names: names of the outputs ``__call__`` returns.
    """

    @property
    def input_size(self) -> int | None: ...

    @property
    def output_names(self) -> tuple[str, ...]: ...

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the graph.

        Args:
            images: (B, S, S, 3) float32 RGB in [0, 255] (``preprocess_image`` output).

        Returns:
            Dict output name -> float32 array with leading batch dimension B
            (int8 graphs: already dequantised).
        """
        ...


def check_images(images: np.ndarray, input_size: int) -> np.ndarray:
    """Validates a runner input batch.

    Args:
        images: (B, S, S, 3) float32 RGB in [0, 255].
        input_size: the runner's S.

    Returns:
        ``images`` as a C-contiguous float32 array (no copy when already so).

    Raises:
        ValueError: wrong dtype or shape.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.float32:
        raise ValueError(f"images must be a float32 numpy array, got "
                         f"{getattr(images, 'dtype', type(images).__name__)}")
    expected = (input_size, input_size, IMAGE_CHANNELS)
    if images.ndim != 4 or images.shape[1:] != expected or images.shape[0] == 0:
        raise ValueError(f"images must have shape (B, {input_size}, {input_size}, {IMAGE_CHANNELS}) "
                         f"with B >= 1, got {images.shape}")
    return np.ascontiguousarray(images)


def is_image_shape(shape: tuple[int | None, ...]) -> bool:
    """Whether an input shape is an image batch (B, S, S, 3) with a fixed square side S.

    Args:
        shape: the input's dimensions, batch first; ``None`` or a negative
            number (``DYNAMIC_DIM``) where decided at run time.
    """
    return (len(shape) == 4 and shape[1] is not None and shape[1] > 0 and shape[1] == shape[2]
            and shape[3] == IMAGE_CHANNELS)


def check_features(features: np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    """Validates a batch for a feature-input graph (e.g. Mask R-CNN RoI features).

    Args:
        features: (B, ...) float32 array, B >= 1.
        shape: the graph input's shape, batch first; ``None`` or a negative
            number (``DYNAMIC_DIM``) matches any size on that axis.

    Returns:
        ``features`` as a C-contiguous float32 array (no copy when already so).

    Raises:
        ValueError: wrong dtype, rank or shape.
    """
    if not isinstance(features, np.ndarray) or features.dtype != np.float32:
        raise ValueError(f"features must be a float32 numpy array, got "
                         f"{getattr(features, 'dtype', type(features).__name__)}")
    fits = features.ndim == len(shape) and all(
        want is None or want < 0 or got == want for got, want in zip(features.shape[1:], shape[1:]))
    if not fits or features.shape[0] == 0:
        expected = ", ".join("?" if d is None or d < 0 else str(d) for d in shape[1:])
        raise ValueError(f"features must have shape (B, {expected}) with B >= 1, got {features.shape}")
    return np.ascontiguousarray(features)


def open_runner(path: str | os.PathLike, num_threads: int | None = None) -> Runner:
    """Opens a model file with the runner its extension calls for.

    When the box head lies beside the file (``tfsp.runtime.graph_chain.head_path``), the file
    is stage 1 of a split-graph model: every head file that exists is opened with the same
    runner type and a ``GraphChain`` is returned.

    Args:
        path: ``.keras`` (Keras 3, imports TensorFlow) or ``.tflite`` (LiteRT).
        num_threads: CPU threads for the TFLite interpreter (None: its default);
            ignored for Keras.

    Returns:
        A ``Runner`` (a ``GraphChain`` for split-graph models).

    Raises:
        ValueError: unknown extension.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    stage1 = _open_one(path, num_threads)
    if not head_path(path, BOX_HEAD_GRAPH).is_file():
        return stage1
    heads = {name: _open_one(head_path(path, name), num_threads) for name in HEAD_GRAPHS
             if head_path(path, name).is_file()}
    return GraphChain(stage1, heads, model_path=path)


def _open_one(path: Path, num_threads: int | None):
    """One graph file: a ``KerasRunner`` or a ``TFLiteRunner`` by extension."""
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    suffix = path.suffix.lower()
    if suffix == KERAS_SUFFIX:
        from tfsp.runtime.keras_runner import KerasRunner  # TensorFlow only when asked for.

        return KerasRunner(path)
    if suffix == TFLITE_SUFFIX:
        from tfsp.runtime.tflite_runner import TFLiteRunner

        return TFLiteRunner(path, num_threads=num_threads)
    raise ValueError(f"{path}: unknown model extension {suffix!r}; expected {KERAS_SUFFIX} or {TFLITE_SUFFIX}")


def check_pipeline_runner(pipeline: str, runner: Runner, spec: ModelSpec, task: Task,
                          output_names: tuple[str, ...]) -> None:
    """Checks that a runner and a spec fit a task pipeline.

    Args:
        pipeline: the pipeline's name, for the messages.
        runner: the graph runner.
        spec: the model's spec.
        task: the task the pipeline runs.
        output_names: graph outputs the pipeline reads.

    Raises:
        ValueError: the spec is for another task, the input sizes differ, or outputs are missing.
    """
    if spec.task is not task:
        raise ValueError(f"{pipeline} needs a Task.{task.name} spec, got {spec.task}")
    if runner.input_size != spec.input_size:
        raise ValueError(f"runner input size {runner.input_size} != spec input size {spec.input_size}")
    missing = sorted(set(output_names) - set(runner.output_names))
    if missing:
        raise ValueError(f"runner lacks outputs {missing}; it has {list(runner.output_names)}")
