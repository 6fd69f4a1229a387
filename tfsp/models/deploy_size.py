"""Running trained weights at another input size (the ``deploy_input_size`` of the model configs).

The SSD, OpenPose and Mask R-CNN stage-1 graphs are fully convolutional, so a graph built for another
input side has the same weights in the same order; only its feature maps change size.
"""

from __future__ import annotations

from collections.abc import Callable

import keras


def rebuilt_at(model: keras.Model, trained_size: int, deploy_size: int,
               build: Callable[[], keras.Model]) -> keras.Model:
    """``model`` itself when the sizes match, else ``build()`` holding a copy of ``model``'s weights.

    Args:
        model: the trained graph.
        trained_size: its input side in pixels.
        deploy_size: the input side to deploy at.
        build: builds the same architecture at ``deploy_size`` (fresh weights, overwritten here).

    Returns:
        A graph at ``deploy_size``; later training of ``model`` does not reach a copy.
    """
    if deploy_size == trained_size:
        return model
    copy = build()
    copy.set_weights(model.get_weights())
    return copy
