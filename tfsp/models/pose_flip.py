"""Flip-averaged pose maps: test-time horizontal-flip augmentation inside the deployed graph.

The deployed pose graph runs its network twice, on the image and on its mirror image, maps the
mirrored outputs back (flip the maps' x axis, swap left and right keypoint channels, swap the PAF
channels of mirrored limbs and turn their vectors) and outputs the mean. The graph keeps its input,
its output names and shapes, so the spec, the runners, the parser and the export do not change; a
TFLite file simply holds both passes (REVERSE_V2, GATHER, MUL and ADD are builtin int8 ops). It
costs twice the network's time and no parser time.

Why: a flat silhouette does not always say which way a person faces, and a network trained with
flip augmentation is then unsure which of two mirrored limbs is the left one; averaging with the
mirrored view makes the maps exactly flip-consistent (a model's output on an image and on its
mirror image agree up to the mirroring). README (pose) has the measured gain.

The mirroring of the fields is the same one the training targets obey: rendering the targets of
mirrored keypoints equals mirroring the rendered targets with :func:`mirror_heatmaps` and
:func:`mirror_pafs` (``tests/models/test_pose_flip.py``).
"""

from __future__ import annotations

import keras
import numpy as np

from tfsp.data.keypoints import FLIP_PERMUTATION, NUM_KEYPOINTS, PAF_LIMBS
from tfsp.postprocess.paf import HEATMAPS, PAFS
from tfsp.spec import INPUT_NAME

MAP_X_AXIS = 2  # (B, F, F, C) maps and (B, S, S, 3) images: x is axis 2


def heatmap_flip_channels() -> np.ndarray:
    """(18,) int32: mirrored heatmap channel ``c`` holds original channel ``index[c]`` (background stays last)."""
    return np.array([*FLIP_PERMUTATION, NUM_KEYPOINTS], np.int32)


def paf_flip_channels(limbs: tuple[tuple[int, int], ...] = PAF_LIMBS) -> tuple[np.ndarray, np.ndarray]:
    """Channel order and signs that mirror Part Affinity Fields.

    Mirroring maps limb ``(a, b)`` to the limb joining the mirrored keypoints ``(P[a], P[b])``
    (``P`` = :data:`tfsp.data.keypoints.FLIP_PERMUTATION`); its vector ``(x, y)`` becomes
    ``(-x, y)``, or ``(x, -y)`` when the graph holds that limb as ``(P[b], P[a])`` (it points the
    other way, e.g. shoulder to shoulder).

    Args:
        limbs: the PAF graph, limb l in channels (2l, 2l + 1).

    Returns:
        ``(index, sign)``, each (2L,): mirrored channel ``c`` is ``sign[c] * original[index[c]]``
        (after flipping the map's x axis); int32 and float32.

    Raises:
        ValueError: the mirror image of a limb is not in ``limbs`` (either way round).
    """
    position = {limb: l for l, limb in enumerate(limbs)}
    index, sign = [], []
    for a, b in limbs:
        mirrored = (FLIP_PERMUTATION[a], FLIP_PERMUTATION[b])
        if mirrored in position:
            source, direction = position[mirrored], 1.0
        elif mirrored[::-1] in position:
            source, direction = position[mirrored[::-1]], -1.0
        else:
            raise ValueError(f"limb {(a, b)} mirrors to {mirrored}, which is not in the PAF graph")
        index += [2 * source, 2 * source + 1]
        sign += [-direction, direction]
    return np.array(index, np.int32), np.array(sign, np.float32)


def mirror_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """The confidence maps of the mirror image: (..., F, F, 18) -> same shape and dtype (numpy)."""
    return np.flip(heatmaps, axis=-2)[..., heatmap_flip_channels()]


def mirror_pafs(pafs: np.ndarray) -> np.ndarray:
    """The PAFs of the mirror image: (..., F, F, 36) -> same shape and dtype (numpy)."""
    index, sign = paf_flip_channels()
    return (np.flip(pafs, axis=-2)[..., index] * sign).astype(pafs.dtype)


def flip_averaged(model: keras.Model) -> keras.Model:
    """Wraps a deployed pose graph so it outputs the mean of its maps on the image and its mirror image.

    Args:
        model: graph with one ``image`` input (B, S, S, 3) float32 and outputs ``heatmaps``
            (B, F, F, 18) and ``pafs`` (B, F, F, 36) (``tfsp.models.openpose.deploy_openpose``).

    Returns:
        A graph with the same input and output names, shapes and dtypes, calling ``model`` twice
        (shared weights). Built from Keras layers and ``keras.ops`` only, so it saves and loads
        without custom objects.
    """
    image = keras.Input(tuple(model.input.shape[1:]), name=INPUT_NAME)
    plain = model(image)
    mirrored = model(keras.ops.flip(image, axis=MAP_X_AXIS))
    heat_back = keras.ops.take(keras.ops.flip(mirrored[HEATMAPS], axis=MAP_X_AXIS), heatmap_flip_channels(), axis=-1)
    index, sign = paf_flip_channels()
    paf_back = keras.ops.take(keras.ops.flip(mirrored[PAFS], axis=MAP_X_AXIS), index, axis=-1) * sign
    outputs = {HEATMAPS: keras.layers.Average(name=HEATMAPS)([plain[HEATMAPS], heat_back]),
               PAFS: keras.layers.Average(name=PAFS)([plain[PAFS], paf_back])}
    return keras.Model(image, outputs, name=model.name)
