"""Fixtures shared by the model tests."""

import keras
import numpy as np
import pytest

from tfsp.models import openpose

TINY_OPENPOSE = openpose.OpenPoseConfig(input_size=64, alpha=0.35, channels=8, initial_blocks=1,
                                        num_refinement_stages=1, refinement_blocks=1)


@pytest.fixture(scope="session")
def tiny_openpose_config() -> openpose.OpenPoseConfig:
    """A 64 px OpenPose config with 8 channels and one refinement stage."""
    return TINY_OPENPOSE


@pytest.fixture(scope="session")
def tiny_openpose_model(tiny_openpose_config):
    """The training model of ``tiny_openpose_config`` (every stage's outputs), seeded weights."""
    keras.utils.set_random_seed(0)
    return openpose.build_openpose(tiny_openpose_config)


@pytest.fixture(scope="session")
def random_images():
    """``random_images(batch, size, seed=0)``: (batch, size, size, 3) float32 pixels uniform in [0, 255]."""

    def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)

    return images
