"""SSD default boxes (anchors), after Liu et al. 2016, "SSD: Single Shot
MultiBox Detector", and the authors' Caffe ``PriorBox`` layer.

Every feature map ``k`` (square, ``f_k x f_k``) gets, at each cell ``(i, j)``,
boxes centred at ``((j + 0.5) * step_k, (i + 0.5) * step_k)`` input pixels
(the +0.5 pixel-centre convention), in this per-location order:

1. aspect ratio 1, size ``s_k``;
2. aspect ratio 1, size ``sqrt(s_k * s'_k)`` where ``s'_k`` is the map's max
   size (the paper's ``sqrt(s_k * s_{k+1})``);
3. for each ratio ``r`` in the map's ``aspect_ratios``: ``w = s_k * sqrt(r)``,
   ``h = s_k / sqrt(r)``, then the flipped box with ratio ``1 / r``.

So a map with ratios ``(2, 3)`` has 6 boxes per location, ``(2,)`` has 4.

Sizes come from one of two places:

* Paper formula (``min_sizes is None``): ``s_k = min_scale + (max_scale -
  min_scale) * (k - 1) / (m - 1)`` for ``k = 1..m`` (times ``image_size``), and
  ``s'_k = s_{k+1}``, with ``s_{m+1}`` extrapolated one more linear step (as the
  Caffe reference does: 264 -> 315 px for SSD300).
* Explicit per-map ``min_sizes`` / ``max_sizes`` in input pixels. The released
  SSD300 / SSD512 models use these (conv4_3 gets a smaller hand-picked scale and
  the Caffe script floors the percentage step), so ``SSD300`` and ``SSD512``
  below reproduce the Caffe ``ssd_pascal.py`` / ``ssd_pascal_512.py`` priors
  exactly; when given they take precedence over ``min_scale`` / ``max_scale``.

Anchors are ``[cx, cy, w, h]`` normalised by ``image_size`` (so ``[0, 1]`` for
centres), ordered map by map, then row-major over ``(y, x)``, then by the
per-location order above.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from tfsp.postprocess.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

CELL_CENTER_OFFSET: float = 0.5
"""Anchor centres sit at the centre of each feature-map cell (+0.5 cell)."""

PAPER_MIN_SCALE: float = 0.2
"""SSD paper's smallest scale s_min (fraction of the input size)."""

PAPER_MAX_SCALE: float = 0.9
"""SSD paper's largest scale s_max (fraction of the input size)."""


def _tuple_of_floats(values: Sequence[float] | None, name: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    result = tuple(float(v) for v in values)
    if any(not v > 0 for v in result):
        raise ValueError(f"{name} must be positive, got {result}")
    return result


@dataclasses.dataclass(frozen=True)
class SsdAnchorConfig:
    """Configuration of SSD default boxes for a square input.

    Attributes:
        image_size: input side in pixels (the model input is square).
        feature_map_sizes: side ``f_k`` of each square feature map, finest first.
        min_scale: paper ``s_min``, fraction of ``image_size`` (used when
            ``min_sizes`` is None).
        max_scale: paper ``s_max``, fraction of ``image_size`` (used when
            ``min_sizes`` is None).
        aspect_ratios: per map, the extra ratios ``r`` (each adds ``r`` and
            ``1 / r``); e.g. ``((2.0,), (2.0, 3.0))``.
        steps: per map, distance between neighbouring anchor centres in input
            pixels; None means ``image_size / f_k``.
        clip: clip anchors (as ``xyxy``) to ``[0, 1]`` after generation.
        min_sizes: optional per-map box size ``s_k`` in input pixels.
        max_sizes: per-map max size ``s'_k`` in pixels; required with
            ``min_sizes``.
    """

    image_size: int
    feature_map_sizes: tuple[int, ...]
    min_scale: float
    max_scale: float
    aspect_ratios: tuple[tuple[float, ...], ...]
    steps: tuple[float, ...] | None = None
    clip: bool = False
    min_sizes: tuple[float, ...] | None = None
    max_sizes: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        num_maps = len(self.feature_map_sizes)
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if num_maps == 0 or any(int(f) != f or f <= 0 for f in self.feature_map_sizes):
            raise ValueError(f"feature_map_sizes must be positive ints: {self.feature_map_sizes}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(
                f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}"
            )
        ratios = tuple(tuple(float(r) for r in per_map) for per_map in self.aspect_ratios)
        if len(ratios) != num_maps:
            raise ValueError(f"aspect_ratios needs {num_maps} entries, got {len(ratios)}")
        if any(not r > 0 or r == 1.0 for per_map in ratios for r in per_map):
            raise ValueError(f"aspect_ratios must be positive and != 1, got {ratios}")
        steps = _tuple_of_floats(self.steps, "steps")
        min_sizes = _tuple_of_floats(self.min_sizes, "min_sizes")
        max_sizes = _tuple_of_floats(self.max_sizes, "max_sizes")
        for name, values in (("steps", steps), ("min_sizes", min_sizes), ("max_sizes", max_sizes)):
            if values is not None and len(values) != num_maps:
                raise ValueError(f"{name} needs {num_maps} entries, got {len(values)}")
        if (min_sizes is None) != (max_sizes is None):
            raise ValueError("min_sizes and max_sizes must be given together")
        # Normalise sequences (e.g. lists from YAML) to tuples: hashable, frozen.
        object.__setattr__(self, "feature_map_sizes", tuple(int(f) for f in self.feature_map_sizes))
        object.__setattr__(self, "aspect_ratios", ratios)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "min_sizes", min_sizes)
        object.__setattr__(self, "max_sizes", max_sizes)


SSD300 = SsdAnchorConfig(
    image_size=300,
    feature_map_sizes=(38, 19, 10, 5, 3, 1),
    min_scale=PAPER_MIN_SCALE,
    max_scale=PAPER_MAX_SCALE,
    aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
    steps=(8.0, 16.0, 32.0, 64.0, 100.0, 300.0),
    min_sizes=(30.0, 60.0, 111.0, 162.0, 213.0, 264.0),
    max_sizes=(60.0, 111.0, 162.0, 213.0, 264.0, 315.0),
)
"""SSD300 (Caffe ``ssd_pascal.py``): 8732 anchors."""

SSD512 = SsdAnchorConfig(
    image_size=512,
    feature_map_sizes=(64, 32, 16, 8, 4, 2, 1),
    min_scale=0.15,
    max_scale=PAPER_MAX_SCALE,
    aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
    steps=(8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0),
    min_sizes=(35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8),
    max_sizes=(76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
)
"""SSD512 (Caffe ``ssd_pascal_512.py``): 24564 anchors."""


def num_anchors_per_location(config: SsdAnchorConfig) -> tuple[int, ...]:
    """Boxes per feature-map cell, one entry per map (``2 + 2 * len(ratios)``).

    Args:
        config: anchor configuration.

    Returns:
        Tuple of ints, e.g. ``(4, 6, 6, 6, 4, 4)`` for ``SSD300``.
    """
    return tuple(2 + 2 * len(ratios) for ratios in config.aspect_ratios)


def num_anchors(config: SsdAnchorConfig) -> int:
    """Total anchor count ``sum_k f_k^2 * boxes_k`` (8732 for ``SSD300``)."""
    per_location = num_anchors_per_location(config)
    return sum(f * f * n for f, n in zip(config.feature_map_sizes, per_location))


def anchor_sizes_px(config: SsdAnchorConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-map ``(min_sizes, max_sizes)`` in input pixels.

    Explicit ``config.min_sizes`` / ``max_sizes`` when set, otherwise the paper's
    linear scales (see the module docstring) times ``image_size``.

    Args:
        config: anchor configuration.

    Returns:
        Two tuples of floats, one entry per feature map.
    """
    if config.min_sizes is not None and config.max_sizes is not None:
        return config.min_sizes, config.max_sizes
    num_maps = len(config.feature_map_sizes)
    delta = (config.max_scale - config.min_scale) / (num_maps - 1) if num_maps > 1 else 0.0
    # m + 1 scales: the last one only feeds the second ratio-1 box of the last map.
    scales = [config.min_scale + delta * k for k in range(num_maps + 1)]
    if num_maps == 1:
        scales[1] = config.max_scale
    sizes = tuple(s * config.image_size for s in scales)
    return sizes[:-1], sizes[1:]


def _location_box_sizes(
    min_size: float, max_size: float, ratios: tuple[float, ...]
) -> np.ndarray:
    """``(boxes_per_location, 2)`` float64 ``(w, h)`` in pixels, in anchor order."""
    sizes = [(min_size, min_size), (math.sqrt(min_size * max_size),) * 2]
    for ratio in ratios:
        root = math.sqrt(ratio)
        sizes.append((min_size * root, min_size / root))
        sizes.append((min_size / root, min_size * root))
    return np.asarray(sizes, dtype=np.float64)


def generate_ssd_anchors(config: SsdAnchorConfig) -> np.ndarray:
    """Generates all SSD default boxes for ``config``.

    Args:
        config: anchor configuration.

    Returns:
        ``(A, 4)`` float32 ``[cx, cy, w, h]`` normalised by ``image_size``,
        ordered map by map, row-major over ``(y, x)``, then per-location order
        (see the module docstring). ``A == num_anchors(config)``.
    """
    min_sizes, max_sizes = anchor_sizes_px(config)
    per_map = []
    for k, fmap in enumerate(config.feature_map_sizes):
        step = config.steps[k] if config.steps is not None else config.image_size / fmap
        wh = _location_box_sizes(min_sizes[k], max_sizes[k], config.aspect_ratios[k])
        centers = (np.arange(fmap, dtype=np.float64) + CELL_CENTER_OFFSET) * step
        cy, cx = np.meshgrid(centers, centers, indexing="ij")  # (f, f), row-major (y, x)
        boxes = np.empty((fmap, fmap, wh.shape[0], 4), dtype=np.float64)
        boxes[..., 0] = cx[:, :, None]
        boxes[..., 1] = cy[:, :, None]
        boxes[..., 2:] = wh[None, None, :, :]
        per_map.append(boxes.reshape(-1, 4))
    anchors = np.concatenate(per_map, axis=0) / config.image_size
    if config.clip:
        anchors = xyxy_to_cxcywh(np.clip(cxcywh_to_xyxy(anchors), 0.0, 1.0))
    return anchors.astype(np.float32)
