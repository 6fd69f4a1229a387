"""Keras 3 runner (server side; imports Keras/TensorFlow, unlike the rest of tfsp.runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from tfsp.runtime.runner import check_images


class KerasRunner:
    """Runs a Keras 3 model whose single input is the image and whose outputs are a dict.

    Satisfies ``tfsp.runtime.runner.Runner``.

    Args:
        model: a ``.keras`` file (loaded with ``compile=False``, so it needs no
            custom objects) or an in-memory ``keras.Model``.

    Raises:
        ValueError: the model's input is not (None, S, S, 3) or its outputs are
            not a dict of named tensors.
    """

    def __init__(self, model: str | os.PathLike | keras.Model) -> None:
        if not isinstance(model, keras.Model):
            model = keras.models.load_model(Path(model), compile=False)
        shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None or shape[3] != 3:
            raise ValueError(f"model input must be (None, S, S, 3), got {shape}")
        if not isinstance(model.output, dict):
            raise ValueError("model outputs must be a dict of named tensors, got "
                             f"{type(model.output).__name__}")
        self._model = model
        self._input_size = int(shape[1])
        self._output_names = tuple(model.output)

    @property
    def model(self) -> keras.Model:
        """The wrapped Keras model."""
        return self._model

    @property
    def input_size(self) -> int:
        """Square input side S in pixels."""
        return self._input_size

    @property
    def output_names(self) -> tuple[str, ...]:
        """Keys of the model's output dict."""
        return self._output_names

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the model in inference mode.

        Args:
            images: (B, S, S, 3) float32 RGB in [0, 255].

        Returns:
            Output name -> float32 array with leading dimension B.
        """
        outputs = self._model.predict_on_batch(check_images(images, self._input_size))
        return {name: np.asarray(outputs[name], np.float32) for name in self._output_names}
