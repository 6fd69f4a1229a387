"""Output structures shared by every task, on server and device (numpy only).

Pixel convention: pixel (row i, col j) covers [j, j+1) x [i, i+1), centre (j + 0.5, i + 0.5).
Boxes are ``[x0, y0, x1, y1]`` in pixels of their image; COCO ``bbox`` ``[x, y, w, h]`` likewise.

Dtype policy: constructors are strict: a wrong type, dtype or shape raises ``ValueError``
naming class and field, nothing is converted silently. ``create(...)`` is the lenient entry
point: it coerces array-likes to the documented dtypes, then calls the constructor. Stored
arrays are read-only and private (copied unless already read-only down to their root).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Sequence

import numpy as np

NUM_KEYPOINTS = 17  # keypoints per pose, COCO order (tfsp.data.keypoints)
KEYPOINT_VISIBLE = 2  # COCO v that Poses.to_coco writes where score > 0 (0 elsewhere)


def _freeze(name: str, value: Any, dtype: type, shape: tuple[int | str, ...]) -> np.ndarray:
    """Checks dtype and shape pattern (ints fixed, strings free); returns a read-only array."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    if value.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {value.dtype.name} "
                         f"(use create(...) to coerce)")
    pattern = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    if value.ndim != len(shape) or any(isinstance(s, int) and s != d for s, d in zip(shape, value.shape)):
        raise ValueError(f"{name} must have shape {pattern}, got {tuple(value.shape)}")
    root = value
    while isinstance(root.base, np.ndarray):
        root = root.base
    if value.flags.writeable or root.base is not None or root.flags.writeable:
        value = value.copy()
        value.setflags(write=False)
    return value


class _Instances:
    """Validation, coercion, ``len`` and selection shared by the per-instance structures."""

    _LAYOUT: dict[str, tuple[type, tuple[int | str, ...]]] = {}  # field -> (dtype, shape pattern)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for field, (dtype, shape) in self._LAYOUT.items():
            object.__setattr__(self, field, _freeze(f"{owner}.{field}", getattr(self, field), dtype, shape))
        lengths = {f: len(getattr(self, f)) for f, (_, shape) in self._LAYOUT.items() if shape[0] == "N"}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{owner} fields must share the leading length N, got {lengths}")

    @classmethod
    def _coerce(cls, **values: Any) -> Any:
        """Casts each value to its dtype; an empty value becomes (0, *fixed) where only N is free."""
        arrays = {f: np.asarray(v).astype(cls._LAYOUT[f][0]) for f, v in values.items()}
        for field, (_, shape) in cls._LAYOUT.items():
            if arrays[field].size == 0 and all(isinstance(s, int) for s in shape[1:]):
                arrays[field] = arrays[field].reshape(-1, *shape[1:])
        return cls(**arrays)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: Any) -> Any:
        """Selects instances by bool mask, int index array, slice or int (an int keeps N=1)."""
        rows = np.array([index]) if isinstance(index, (int, np.integer)) else index
        return type(self)(**{f.name: getattr(self, f.name)[rows] if self._LAYOUT.get(f.name, (0, "-"))[1][0] == "N"
                             else getattr(self, f.name) for f in dataclasses.fields(self)})


def _category(owner: str, class_ids: np.ndarray, category_ids: Sequence[int]) -> list[int]:
    if len(class_ids) and (class_ids.min() < 0 or class_ids.max() >= len(category_ids)):
        raise ValueError(f"{owner}.class_ids must lie in [0, {len(category_ids)}) to map to category_ids, "
                         f"got range [{class_ids.min()}, {class_ids.max()}]")
    return [int(category_ids[c]) for c in class_ids]


def mask_to_rle(mask: np.ndarray) -> dict:
    """Encodes an (H, W) bool mask as uncompressed COCO RLE (numpy only).

    Returns ``{"size": [H, W], "counts": [int, ...]}``: run lengths of the mask read
    in column-major (Fortran) order, starting with a run of zeros (possibly 0).
    """
    height, width = mask.shape
    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return {"size": [int(height), int(width)], "counts": ([0] if flat[:1].any() else []) + runs}


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decodes uncompressed COCO RLE (as written by ``mask_to_rle``) to an (H, W) bool mask."""
    height, width = rle["size"]
    flat = np.repeat(np.arange(len(rle["counts"])) % 2 == 1, np.asarray(rle["counts"], np.int64))
    if flat.size != height * width:
        raise ValueError(f"RLE counts sum to {flat.size}, expected H*W={height * width}")
    return flat.reshape((height, width), order="F")


@dataclasses.dataclass(frozen=True, eq=False)
class Detections(_Instances):
    """Boxes with scores and classes.

    Attributes:
        boxes_xyxy: (N, 4) float32 ``[x0, y0, x1, y1]`` in image pixels.
        scores: (N,) float32 confidences.
        class_ids: (N,) int32 contiguous 0-based foreground class ids.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    _LAYOUT = {"boxes_xyxy": (np.float32, ("N", 4)), "scores": (np.float32, ("N",)), "class_ids": (np.int32, ("N",))}

    @classmethod
    def create(cls, boxes_xyxy: Any, scores: Any, class_ids: Any) -> Detections:
        """Coerces array-likes to float32 / int32 (an empty box list becomes (0, 4)) and constructs."""
        return cls._coerce(boxes_xyxy=boxes_xyxy, scores=scores, class_ids=class_ids)

    @classmethod
    def empty(cls) -> Detections:
        """Zero detections."""
        return cls.create(np.zeros((0, 4)), [], [])

    def to_coco(self, image_id: int, category_ids: Sequence[int]) -> list[dict]:
        """COCO results ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

        ``category_ids[class_id]`` is the COCO category id of each class (here and below).
        """
        cats = _category("Detections", self.class_ids, category_ids)
        xywh = np.concatenate([self.boxes_xyxy[:, :2], self.boxes_xyxy[:, 2:] - self.boxes_xyxy[:, :2]], 1)
        return [{"image_id": int(image_id), "category_id": c, "bbox": b, "score": s}
                for c, b, s in zip(cats, xywh.astype(np.float64).tolist(), self.scores.astype(np.float64).tolist())]


@dataclasses.dataclass(frozen=True, eq=False)
class InstanceMasks(_Instances):
    """Full-image binary instance masks with scores and classes.

    Attributes:
        masks: (N, H, W) bool, H x W the image size in pixels.
        scores: (N,) float32 confidences.
        class_ids: (N,) int32 contiguous 0-based foreground class ids.
    """

    masks: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    _LAYOUT = {"masks": (np.bool_, ("N", "H", "W")), "scores": (np.float32, ("N",)), "class_ids": (np.int32, ("N",))}

    @classmethod
    def create(cls, masks: Any, scores: Any, class_ids: Any) -> InstanceMasks:
        """Coerces: masks to bool (nonzero is foreground), scores to float32, class_ids to int32."""
        return cls._coerce(masks=masks, scores=scores, class_ids=class_ids)

    @classmethod
    def empty(cls, height: int, width: int) -> InstanceMasks:
        """Zero instances on an image of ``height`` x ``width`` pixels."""
        return cls.create(np.zeros((0, height, width), bool), [], [])

    def to_coco(self, image_id: int, category_ids: Sequence[int]) -> list[dict]:
        """COCO results with uncompressed-RLE ``segmentation`` and no ``bbox`` (pycocotools' area from mask)."""
        cats = _category("InstanceMasks", self.class_ids, category_ids)
        return [{"image_id": int(image_id), "category_id": c, "segmentation": mask_to_rle(m), "score": s}
                for c, m, s in zip(cats, self.masks, self.scores.astype(np.float64).tolist())]


@dataclasses.dataclass(frozen=True, eq=False)
class Poses(_Instances):
    """Multi-person keypoints (17 COCO keypoints in COCO order).

    Attributes:
        keypoints: (N, 17, 3) float32 ``[x, y, score]``; x, y in image pixels; score > 0
            means the keypoint was found, 0 means absent.
        scores: (N,) float32 per-person confidence.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    _LAYOUT = {"keypoints": (np.float32, ("N", NUM_KEYPOINTS, 3)), "scores": (np.float32, ("N",))}

    @classmethod
    def create(cls, keypoints: Any, scores: Any) -> Poses:
        """Coerces array-likes to float32 (empty keypoints become (0, 17, 3)) and constructs."""
        return cls._coerce(keypoints=keypoints, scores=scores)

    @classmethod
    def empty(cls) -> Poses:
        """Zero poses."""
        return cls.create(np.zeros((0, NUM_KEYPOINTS, 3)), [])

    def to_coco(self, image_id: int, category_id: int = 1) -> list[dict]:
        """COCO keypoint results; ``keypoints`` is ``[x, y, v] * 17`` with v = 2 where score > 0, else 0."""
        kps = self.keypoints.astype(np.float64)
        kps[:, :, 2] = np.where(self.keypoints[:, :, 2] > 0, KEYPOINT_VISIBLE, 0)
        return [{"image_id": int(image_id), "category_id": int(category_id), "keypoints": k, "score": s}
                for k, s in zip(kps.reshape(len(self), NUM_KEYPOINTS * 3).tolist(),
                                self.scores.astype(np.float64).tolist())]


class DenseKind(enum.Enum):
    """What a ``DenseMap`` holds; each kind fixes the dtype and rank of ``values``."""

    LABELS = "labels"  # (H, W) int32: 0 = background, k + 1 = foreground class id k
    DEPTH = "depth"  # (H, W) float32 depth in metres
    PROBABILITIES = "probabilities"  # (H, W, C) float32 per-class probabilities in [0, 1]


_DENSE_LAYOUT = {DenseKind.LABELS: (np.int32, ("H", "W")), DenseKind.DEPTH: (np.float32, ("H", "W")),
                 DenseKind.PROBABILITIES: (np.float32, ("H", "W", "C"))}


@dataclasses.dataclass(frozen=True, eq=False)
class DenseMap:
    """A per-pixel map on the image grid (pixel (i, j) covers [j, j+1) x [i, i+1)).

    Attributes:
        values: LABELS (H, W) int32 (0 background, k + 1 class id k); DEPTH (H, W) float32 metres;
            PROBABILITIES (H, W, C) float32 in [0, 1].
        kind: which of the above.
    """

    values: np.ndarray
    kind: DenseKind

    def __post_init__(self) -> None:
        if not isinstance(self.kind, DenseKind):
            raise ValueError(f"DenseMap.kind must be a DenseKind, got {self.kind!r}")
        dtype, shape = _DENSE_LAYOUT[self.kind]
        object.__setattr__(self, "values", _freeze("DenseMap.values", self.values, dtype, shape))

    @classmethod
    def create(cls, values: Any, kind: DenseKind) -> DenseMap:
        """Coerces ``values`` to the dtype ``kind`` requires and constructs."""
        return cls(np.asarray(values).astype(_DENSE_LAYOUT[kind][0]), kind)

    def to_labels(self) -> DenseMap:
        """LABELS map: itself for LABELS, the per-pixel argmax for PROBABILITIES."""
        if self.kind is DenseKind.LABELS:
            return self
        if self.kind is DenseKind.PROBABILITIES:
            return DenseMap(np.argmax(self.values, axis=-1).astype(np.int32), DenseKind.LABELS)
        raise ValueError("DenseMap.to_labels needs kind LABELS or PROBABILITIES, got DEPTH")


@dataclasses.dataclass(frozen=True, eq=False)
class Attributes(_Instances):
    """Multi-label attribute scores per instance.

    Attributes:
        scores: (N, A) float32 probabilities in [0, 1].
        names: the A attribute names.
        thresholds: (A,) float32; attribute a is present where ``scores[:, a] >= thresholds[a]``.
    """

    scores: np.ndarray
    names: tuple[str, ...]
    thresholds: np.ndarray
    _LAYOUT = {"scores": (np.float32, ("N", "A")), "thresholds": (np.float32, ("A",))}

    def __post_init__(self) -> None:
        if not isinstance(self.names, tuple) or not all(isinstance(n, str) for n in self.names):
            raise ValueError(f"Attributes.names must be a tuple of str, got {self.names!r}")
        super().__post_init__()
        if not self.scores.shape[1] == len(self.thresholds) == len(self.names):
            raise ValueError(f"Attributes.scores must have shape (N, A) and thresholds (A,) with A = len(names) = "
                             f"{len(self.names)}, got {self.scores.shape} and {self.thresholds.shape}")
        if not np.all((self.scores >= 0) & (self.scores <= 1)):
            raise ValueError("Attributes.scores must lie in [0, 1]")

    @classmethod
    def create(cls, scores: Any, names: Sequence[str], thresholds: Any) -> Attributes:
        """Coerces scores to float32 (empty -> (0, A)), names to a tuple, thresholds (scalar or (A,)) to (A,)."""
        names = tuple(names)
        thresholds = np.broadcast_to(np.asarray(thresholds, np.float32), (len(names),)).copy()
        scores = np.asarray(scores, np.float32)
        return cls(scores.reshape(0, len(names)) if scores.size == 0 else scores, names, thresholds)

    @classmethod
    def empty(cls, names: Sequence[str], thresholds: Any) -> Attributes:
        """Zero instances with the given vocabulary."""
        return cls.create(np.zeros((0, len(names))), names, thresholds)

    @property
    def present(self) -> np.ndarray:
        """(N, A) bool: ``scores >= thresholds``."""
        return self.scores >= self.thresholds

    def present_names(self, index: int) -> tuple[str, ...]:
        """Names of the attributes present on instance ``index``, in vocabulary order."""
        return tuple(n for n, p in zip(self.names, self.present[index]) if p)
