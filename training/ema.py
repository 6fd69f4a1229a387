"""Exponential moving average (EMA) of the weights, kept by the Keras optimizer.

With `OptimizerConfig.ema_momentum` set, the optimizer (Keras ``use_ema``) updates, after every
step, ``average = momentum * average + (1 - momentum) * weight`` for each trainable variable; the
averages are optimizer variables, so they are saved in every checkpoint and a resumed run goes
on averaging. Training itself always steps the raw weights. Evaluation during training swaps the
averages in and back out (`averaged_weights`), and the end of training leaves the averages in
the model (`keep_averaged_weights`; Keras ``fit`` does the same when it returns), so the saved
``model.keras`` and every export carry the averaged weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras


def uses_ema(model: keras.Model) -> bool:
    """Whether `model` is compiled with an optimizer that keeps built weight averages."""
    optimizer = getattr(model, "optimizer", None)
    return bool(optimizer is not None and getattr(optimizer, "use_ema", False) and optimizer.built)


def keep_averaged_weights(model: keras.Model) -> None:
    """Overwrites the trainable weights with their averages (no-op without EMA); idempotent."""
    if uses_ema(model):
        model.optimizer.finalize_variable_values(model.trainable_variables)


@contextlib.contextmanager
def averaged_weights(model: keras.Model) -> Iterator[keras.Model]:
    """Within the block the model holds its averaged weights; the raw ones come back after it.

    Args:
        model: A compiled model; without EMA (or before the first step) nothing changes.

    Yields:
        `model` itself.
    """
    if not uses_ema(model):
        yield model
        return
    raw = [variable.numpy() for variable in model.trainable_variables]
    keep_averaged_weights(model)
    try:
        yield model
    finally:
        for variable, value in zip(model.trainable_variables, raw):
            variable.assign(value)
