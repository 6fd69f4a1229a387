"""Split-graph models as one runner: stage 1 (image in) plus named head graphs (RoI features in).

A Mask R-CNN export is four files side by side, the main (stage-1) file and one file per head::

    exports/maskrcnn_int8.tflite            stage 1: image -> FPN maps, RPN outputs
    exports/maskrcnn_int8.box_head.tflite   box head: box_rois -> class_logits, box_deltas
    exports/maskrcnn_int8.mask_head.tflite  mask head: mask_rois -> mask_logits
    exports/maskrcnn_int8.keypoint_head.tflite  (optional) keypoint head: keypoint_rois -> keypoint_logits

Training runs use the same scheme with ``.keras`` (``runs/x/model.keras``, ``runs/x/model.box_head.keras``).
``tfsp.runtime.runner.open_runner`` returns a :class:`GraphChain` when the box head exists beside the file.

Device-safe: the standard library only (the runners are passed in).
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np

BOX_HEAD_GRAPH = "box_head"
"""Graph name (and file infix) of the Mask R-CNN box head (stage 2)."""
MASK_HEAD_GRAPH = "mask_head"
"""Graph name (and file infix) of the Mask R-CNN mask head (stage 3)."""
KEYPOINT_HEAD_GRAPH = "keypoint_head"
"""Graph name (and file infix) of the optional keypoint head (stage 3)."""
HEAD_GRAPHS = (BOX_HEAD_GRAPH, MASK_HEAD_GRAPH, KEYPOINT_HEAD_GRAPH)
"""Every head graph name, in run order."""


def head_path(model_path: str | os.PathLike, graph: str) -> Path:
    """The file of head ``graph`` beside the main model file.

    ``head_path("runs/x/model.keras", "box_head") == Path("runs/x/model.box_head.keras")``.

    Args:
        model_path: the main (stage-1) ``.keras`` or ``.tflite`` file.
        graph: one of :data:`HEAD_GRAPHS`.

    Raises:
        ValueError: unknown graph name.
    """
    if graph not in HEAD_GRAPHS:
        raise ValueError(f"unknown head graph {graph!r}; expected one of {', '.join(HEAD_GRAPHS)}")
    path = Path(model_path)
    return path.with_name(f"{path.stem}.{graph}{path.suffix}")


class GraphChain:
    """Stage 1 plus head runners; satisfies ``tfsp.runtime.runner.Runner`` by delegating to stage 1.

    Args:
        stage1: image runner (``input_size``, ``output_names``, ``__call__``).
        heads: head name (in :data:`HEAD_GRAPHS`) -> feature runner (``run_features``).
        model_path: the main file, only for error messages (None: in-memory runners).

    Raises:
        ValueError: an unknown head name.
    """

    def __init__(self, stage1, heads: Mapping[str, object], model_path: str | os.PathLike | None = None) -> None:
        unknown = sorted(set(heads) - set(HEAD_GRAPHS))
        if unknown:
            raise ValueError(f"unknown head graphs {unknown}; expected names in {list(HEAD_GRAPHS)}")
        self._stage1 = stage1
        self._heads = types.MappingProxyType({name: heads[name] for name in HEAD_GRAPHS if name in heads})
        self._model_path = None if model_path is None else Path(model_path)

    @property
    def stage1(self):
        """The stage-1 (image) runner."""
        return self._stage1

    @property
    def input_size(self) -> int | None:
        """Stage 1's square input side S in pixels."""
        return self._stage1.input_size

    @property
    def output_names(self) -> tuple[str, ...]:
        """Stage 1's output names."""
        return self._stage1.output_names

    @property
    def heads(self) -> Mapping[str, object]:
        """Read-only head name -> runner, in :data:`HEAD_GRAPHS` order."""
        return self._heads

    def head(self, name: str):
        """The runner of head ``name``.

        Raises:
            ValueError: the chain has no such head (the message names the file it expected).
        """
        if name not in self._heads:
            where = (f"no {head_path(self._model_path, name)}" if self._model_path is not None and name in HEAD_GRAPHS
                     else f"expected a file MODEL.{name}.(keras|tflite) beside the main model file")
            raise ValueError(f"graph chain has no {name!r} graph ({where}); it has {list(self._heads)}")
        return self._heads[name]

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Runs stage 1 on (B, S, S, 3) float32 RGB 0..255 images; outputs by name."""
        return self._stage1(images)
