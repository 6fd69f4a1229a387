"""Keras 3 runner (server side; imports Keras/TensorFlow, unlike the rest of tfsp.runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from tfsp.runtime.runner import check_features, check_images, is_image_shape


class KerasRunner:
    """Runs a Keras 3 model with a single input and a dict of named outputs.

    Satisfies ``tfsp.runtime.runner.Runner`` when the input is a (None, S, S, 3)
    image (``__call__``); a model whose input is a feature tensor (e.g. the
    Mask R-CNN heads' RoI features) runs through ``run_features``.

    Args:
        model: a ``.keras`` file (loaded with ``compile=False``, so it needs no
            custom objects) or an in-memory ``keras.Model``.

    Raises:
        ValueError: the model has more than one input or its outputs are not a
            dict of named tensors.
    """

    def __init__(self, model: str | os.PathLike | keras.Model) -> None:
        if not isinstance(model, keras.Model):
            model = keras.models.load_model(Path(model), compile=False)
        if len(model.inputs) != 1:
            raise ValueError(f"model must have one input, got {[tensor.name for tensor in model.inputs]}")
        if not isinstance(model.output, dict):
            raise ValueError("model outputs must be a dict of named tensors, got "
                             f"{type(model.output).__name__}")
        self._model = model
        self._input_shape = tuple(model.inputs[0].shape)
        self._output_names = tuple(model.output)

    @property
    def model(self) -> keras.Model:
        """The wrapped Keras model."""
        return self._model

    @property
    def input_size(self) -> int | None:
        """Square input side S in pixels; None when the input is not a (None, S, S, 3) image."""
        return int(self._input_shape[1]) if is_image_shape(self._input_shape) else None

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

        Raises:
            ValueError: wrong images, or the model's input is not an image (use ``run_features``).
        """
        if self.input_size is None:
            raise ValueError(f"model input {self._model.inputs[0].name!r} {self._input_shape} is not a "
                             "(None, S, S, 3) image; run it with run_features")
        return self._predict(check_images(images, self.input_size))

    def run_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the model in inference mode on a float feature batch.

        Args:
            features: (B, ...) float32, the input's shape after the batch axis
                (e.g. (R, 7, 7, F) RoI features for a Mask R-CNN box head).

        Returns:
            Output name -> float32 array with leading dimension B. The batch is zero-padded to
            the next power of two for the graph call (rows are independent in inference mode),
            so a varying number of RoIs does not retrace the Keras predict function every time.

        Raises:
            ValueError: wrong dtype or shape.
        """
        features = check_features(features, self._input_shape)
        count = features.shape[0]
        padded = 1 << (count - 1).bit_length()  # power-of-two batches: Keras traces a few shapes, not one per R
        if padded > count:
            features = np.concatenate([features, np.zeros((padded - count, *features.shape[1:]), np.float32)])
        return {name: values[:count] for name, values in self._predict(features).items()}

    def _predict(self, values: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._model.predict_on_batch(values)
        return {name: np.asarray(outputs[name], np.float32) for name in self._output_names}
