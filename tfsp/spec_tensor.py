"""``TensorInfo``: one graph input or output of a ``tfsp.spec.ModelSpec`` (name, dtype, shape, quantisation).

Its own module so that both ``tfsp.spec`` and ``tfsp.spec_rcnn`` (the Mask R-CNN graph chain) use it
without importing each other. Device-safe: the standard library only.
"""

from __future__ import annotations

import dataclasses

DYNAMIC_DIM = -1
"""Shape entry of a dimension whose size is decided at run time (the batch)."""

NOT_QUANTIZED_SCALE = 0.0
"""``TensorInfo.scale`` of a float tensor (the TFLite convention)."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One graph input or output.

    Quantised tensors hold ``q`` with ``real = scale * (q - zero_point)``.

    Attributes:
        name: signature name (e.g. ``"image"``, ``"box_deltas"``).
        dtype: numpy dtype name: ``"float32"``, ``"int8"`` or ``"uint8"``.
        shape: dimensions, ``DYNAMIC_DIM`` (-1) where decided at run time.
        scale: per-tensor quantisation scale; ``NOT_QUANTIZED_SCALE`` (0) for float.
        zero_point: per-tensor quantisation zero point (0 for float).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float = NOT_QUANTIZED_SCALE
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """Whether the tensor carries integer values with a scale."""
        return self.scale != NOT_QUANTIZED_SCALE
