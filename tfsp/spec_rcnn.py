"""The Mask R-CNN part of a ``ModelSpec``: the numpy steps between the graphs and every head graph.

One spec describes the whole split-graph chain (``tfsp.runtime.graph_chain``): ``ModelSpec.inputs`` and
``outputs`` describe stage 1 (the main file), ``RcnnChain.heads`` the head graphs beside it, each with
its own input (RoI features) and outputs, dtypes and int8 quantisation.

Device-safe: the standard library and device-safe tfsp modules only; strict JSON via ``tfsp.spec_json``.
"""

from __future__ import annotations

import dataclasses

from tfsp.postprocess.rcnn import BoxHeadConfig, FpnAnchorConfig, RpnProposalConfig
from tfsp.runtime.graph_chain import BOX_HEAD_GRAPH, HEAD_GRAPHS, KEYPOINT_HEAD_GRAPH, MASK_HEAD_GRAPH
from tfsp.spec_json import SpecError
from tfsp.spec_tensor import TensorInfo


@dataclasses.dataclass(frozen=True)
class GraphInfo:
    """One head graph of a split-graph model.

    Attributes:
        name: graph name, one of ``tfsp.runtime.graph_chain.HEAD_GRAPHS`` (its file infix).
        inputs: the one feature input, e.g. ``box_rois`` (-1, s, s, F).
        outputs: the raw outputs, by name, in spec order.
    """

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def __post_init__(self) -> None:
        if self.name not in HEAD_GRAPHS:
            raise SpecError(f"GraphInfo.name {self.name!r} is not one of {', '.join(HEAD_GRAPHS)}")
        if len(self.inputs) != 1:
            raise SpecError(f"GraphInfo {self.name!r} must have exactly one input, got {len(self.inputs)}")
        if not self.outputs:
            raise SpecError(f"GraphInfo {self.name!r} must have at least one output")

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs, in spec order."""
        return tuple(t.name for t in self.outputs)


@dataclasses.dataclass(frozen=True)
class RcnnChain:
    """Everything the Mask R-CNN pipeline needs besides the graphs and the ``ModelSpec`` basics.

    Attributes:
        anchors: FPN anchors of stage 1's RPN outputs; ``image_size`` is ``(S, S)``.
        proposals: RPN proposal selection.
        box_head: box-head decoding thresholds.
        box_roi_size: RoIAlign side s of the box head's (R, s, s, F) input.
        mask_roi_size: RoIAlign side of the mask head's input.
        keypoint_roi_size: RoIAlign side of the keypoint head's input.
        sampling_ratio: RoIAlign sample points per bin side.
        mask_threshold: pasted mask foreground where the probability is ``>=`` this, in [0, 1].
        person_class_id: class whose detections get keypoints; None exactly when there is no
            keypoint head.
        heads: the head graphs, in ``HEAD_GRAPHS`` order: box and mask head, then the optional
            keypoint head.
    """

    anchors: FpnAnchorConfig
    proposals: RpnProposalConfig
    box_head: BoxHeadConfig
    box_roi_size: int
    mask_roi_size: int
    keypoint_roi_size: int
    sampling_ratio: int
    mask_threshold: float
    person_class_id: int | None
    heads: tuple[GraphInfo, ...]

    def __post_init__(self) -> None:
        for name in ("box_roi_size", "mask_roi_size", "keypoint_roi_size", "sampling_ratio"):
            if getattr(self, name) < 1:
                raise SpecError(f"RcnnChain.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.mask_threshold <= 1.0:
            raise SpecError(f"RcnnChain.mask_threshold must be in [0, 1], got {self.mask_threshold}")
        if self.person_class_id is not None and self.person_class_id < 0:
            raise SpecError(f"RcnnChain.person_class_id must be >= 0 or null, got {self.person_class_id}")
        names = tuple(graph.name for graph in self.heads)
        expected = (BOX_HEAD_GRAPH, MASK_HEAD_GRAPH) + (
            () if self.person_class_id is None else (KEYPOINT_HEAD_GRAPH,))
        if names != expected:
            raise SpecError(f"RcnnChain.heads must be {list(expected)} (the keypoint head exactly when "
                            f"person_class_id is set, here {self.person_class_id}), got {list(names)}")

    @property
    def head_names(self) -> tuple[str, ...]:
        """Names of the head graphs, in spec order."""
        return tuple(graph.name for graph in self.heads)

    def graph(self, name: str) -> GraphInfo:
        """The head graph called ``name``.

        Raises:
            SpecError: the chain has no such head.
        """
        for graph in self.heads:
            if graph.name == name:
                return graph
        raise SpecError(f"RcnnChain has no {name!r} graph; it has {list(self.head_names)}")
