"""Fixtures for the edge demo tests: a tiny SSD exported to fp32 and int8 TFLite, and test images.

The model is untrained (seeded weights): its detections are meaningless but deterministic,
which is all the demo tests need (files written, boxes drawn where the pipeline says).
Export takes seconds, so it happens once per session.
"""

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tfsp.postprocess.anchors import SsdAnchorConfig
from tfsp.postprocess.ssd import SsdPostprocessConfig

TINY_INPUT_SIZE = 64
TINY_ANCHORS = SsdAnchorConfig(image_size=TINY_INPUT_SIZE, feature_map_sizes=(8, 4, 2, 1), min_scale=0.2,
                               max_scale=0.9, aspect_ratios=((2.0,), (2.0,), (2.0,), (2.0,)))
CLASS_NAMES = ("person", "circle", "square")
CATEGORY_IDS = (1, 2, 3)
MAX_DETECTIONS = 3
"""Few boxes, so most of an annotated image stays untouched and the boxes are easy to check."""
CALIBRATION_COUNT = 8
IMAGE_SHAPE = (240, 320)
"""(height, width) of the test images: taller than the demo's 4-line timing overlay."""
NUM_IMAGES = 3
SEED = 0


def _scene(seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a gradient with a few filled shapes."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE_SHAPE
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], -1).astype(np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(10, width - 30)), int(rng.integers(10, height - 30))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(image, (x, y), (x + int(rng.integers(10, 30)), y + int(rng.integers(10, 30))), color, -1)
    return image


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``fp32`` and ``int8`` paths of the tiny SSD's ``.tflite`` files (each with its ``.json`` spec)."""
    import keras

    from export.convert import export_model
    from tfsp.models.ssd import SsdConfig, build_ssd
    from tfsp.runtime.preprocess import preprocess_image
    from tfsp.spec import QuantMode
    from tfsp.spec_builders import detection_spec

    keras.utils.set_random_seed(SEED)
    config = SsdConfig(input_size=TINY_INPUT_SIZE, num_classes=len(CLASS_NAMES), anchors=TINY_ANCHORS, alpha=0.35,
                       extra_channels=(16,))
    model = build_ssd(config)
    spec = detection_spec(TINY_INPUT_SIZE, TINY_ANCHORS, CLASS_NAMES, CATEGORY_IDS,
                          postprocess=SsdPostprocessConfig(max_detections=MAX_DETECTIONS))
    calibration = np.stack([preprocess_image(_scene(SEED + k), TINY_INPUT_SIZE)[0] for k in range(CALIBRATION_COUNT)])
    out = tmp_path_factory.mktemp("exports")
    fp32 = export_model(model, spec, QuantMode.FP32, out, "tiny_fp32")
    int8 = export_model(model, spec, QuantMode.INT8, out, "tiny_int8", calibration)
    return SimpleNamespace(fp32=fp32.tflite_path, int8=int8.tflite_path)


@pytest.fixture(scope="session")
def scene():
    """``scene(seed) -> (H, W, 3) uint8 RGB`` test image."""
    return _scene


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """A directory of ``NUM_IMAGES`` lossless PNG test images (``000.png`` ...)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(NUM_IMAGES):
        cv2.imwrite(str(folder / f"{k:03d}.png"), _scene(SEED + k)[..., ::-1])
    return folder
