"""Settings of the Mask R-CNN pipeline (``tfsp.runtime.mask_rcnn``), from a model config or a ``ModelSpec``.

Device-safe: dataclasses over the device-safe postprocess configs and the spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tfsp.postprocess.rcnn import BoxHeadConfig, FpnAnchorConfig, RpnProposalConfig
from tfsp.postprocess.rcnn_masks import DEFAULT_MASK_THRESHOLD
from tfsp.postprocess.roi_align import DEFAULT_SAMPLING_RATIO
from tfsp.runtime.preprocess import ResizeMode
from tfsp.spec import ModelSpec, Task

PERSON_CLASS_NAME = "person"
"""Default keypoint class: the class of this name, when ``person_class_id`` is not given."""


@dataclasses.dataclass(frozen=True)
class MaskRcnnPipelineConfig:
    """Everything the Mask R-CNN pipeline needs besides the graphs.

    Attributes:
        input_size: square model input side S in pixels.
        anchors: FPN anchors; ``image_size`` must be ``(S, S)`` and ``levels`` the stage-1 levels.
        proposals: RPN proposal selection.
        box_head: box-head decoding thresholds.
        class_names: the C foreground class names, class id order.
        category_ids: COCO category id of each class (default ``1 .. C``).
        box_roi_size: RoIAlign side for the box head (7).
        mask_roi_size: RoIAlign side for the mask head (14).
        keypoint_roi_size: RoIAlign side for the keypoint head (14).
        sampling_ratio: RoIAlign sample points per bin side.
        mask_threshold: pasted mask foreground where the probability is ``>=`` this.
        person_class_id: class whose detections get keypoints; None: the class named ``"person"``
            if any (else no keypoints).
        resize_mode: how images become the square input.
    """

    input_size: int
    anchors: FpnAnchorConfig
    class_names: tuple[str, ...]
    proposals: RpnProposalConfig = RpnProposalConfig()
    box_head: BoxHeadConfig = BoxHeadConfig()
    category_ids: tuple[int, ...] | None = None
    box_roi_size: int = 7
    mask_roi_size: int = 14
    keypoint_roi_size: int = 14
    sampling_ratio: int = DEFAULT_SAMPLING_RATIO
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    person_class_id: int | None = None
    resize_mode: ResizeMode = ResizeMode.LETTERBOX

    def __post_init__(self) -> None:
        owner = "MaskRcnnPipelineConfig"
        names = tuple(str(n) for n in self.class_names)
        if not names:
            raise ValueError(f"{owner}.class_names must not be empty")
        categories = tuple(range(1, len(names) + 1)) if self.category_ids is None else tuple(
            int(c) for c in self.category_ids)
        if len(categories) != len(names):
            raise ValueError(f"{owner}.category_ids needs {len(names)} entries, got {len(categories)}")
        if self.anchors.image_size != (self.input_size, self.input_size):
            raise ValueError(f"{owner}.anchors.image_size {self.anchors.image_size} != input "
                             f"({self.input_size}, {self.input_size})")
        for name in ("box_roi_size", "mask_roi_size", "keypoint_roi_size", "sampling_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{owner}.{name} must be >= 1, got {getattr(self, name)}")
        person = self.person_class_id
        if person is None and PERSON_CLASS_NAME in names:
            person = names.index(PERSON_CLASS_NAME)
        if person is not None and not 0 <= person < len(names):
            raise ValueError(f"{owner}.person_class_id must be in [0, {len(names)}), got {person}")
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "category_ids", categories)
        object.__setattr__(self, "person_class_id", person)

    @property
    def levels(self) -> tuple[int, ...]:
        """FPN levels of stage 1 (those of ``anchors``)."""
        return self.anchors.levels

    @classmethod
    def from_model_config(cls, model_config, class_names: Sequence[str], **overrides) -> MaskRcnnPipelineConfig:
        """Builds from a ``tfsp.models.mask_rcnn.MaskRcnnConfig`` (read by attribute, not imported).

        Args:
            model_config: has ``input_size``, ``levels``, ``anchor_sizes_px``, ``aspect_ratios``,
                ``box_roi_size``, ``mask_roi_size``, ``keypoint_roi_size``.
            class_names: the C class names.
            **overrides: any other field of this class.
        """
        anchors = FpnAnchorConfig(image_size=model_config.input_size, levels=model_config.levels,
                                  sizes_px=model_config.anchor_sizes_px, aspect_ratios=model_config.aspect_ratios)
        return cls(input_size=model_config.input_size, anchors=anchors, class_names=tuple(class_names),
                   box_roi_size=model_config.box_roi_size, mask_roi_size=model_config.mask_roi_size,
                   keypoint_roi_size=model_config.keypoint_roi_size, **overrides)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> MaskRcnnPipelineConfig:
        """Builds from an instance-segmentation ``ModelSpec`` (its ``rcnn`` chain and class list).

        Raises:
            ValueError: the spec is for another task.
        """
        if spec.task is not Task.INSTANCE_SEGMENTATION or spec.rcnn is None:
            raise ValueError(f"MaskRcnnPipelineConfig.from_spec needs a Task.INSTANCE_SEGMENTATION spec with "
                             f"rcnn set, got task {spec.task.name}")
        chain = spec.rcnn
        return cls(input_size=spec.input_size, anchors=chain.anchors, class_names=spec.class_names,
                   proposals=chain.proposals, box_head=chain.box_head, category_ids=spec.category_ids,
                   box_roi_size=chain.box_roi_size, mask_roi_size=chain.mask_roi_size,
                   keypoint_roi_size=chain.keypoint_roi_size, sampling_ratio=chain.sampling_ratio,
                   mask_threshold=chain.mask_threshold, person_class_id=chain.person_class_id,
                   resize_mode=spec.resize_mode)
