"""How much each loss term pulls on the weights the terms share: gradient norms per term.

``python -m training.loss_balance --config training/configs/mask_rcnn_synth.yaml [--weights
runs/maskrcnn/checkpoints/last.keras]`` builds the config's model (seeded, as training starts it;
or with the weights of a training checkpoint of the same config), takes a few batches of the real training
pipeline and prints, per loss term: its value, its weight in the total, and the global norm of its
gradient over the *shared* trainable variables (those that get a gradient from two or more terms:
the backbone and FPN of Mask R-CNN, the backbone and earlier stages of pose), unweighted and
weighted. With Adam-type optimizers each weight's step follows the direction of the summed
gradient, so a term whose weighted norm is ten times the others' decides what the shared layers
learn. Terms: Mask R-CNN's ``compute_losses``; otherwise the compiled per-output losses.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfsp.cli import SuggestingParser, positive_int
from tfsp.models.mask_rcnn_train import MaskRcnnTrainModel
from training import trainer
from training.config import ConfigError, load_config

DEFAULT_BATCHES = 3
SAMPLING_SEED = 1  # Mask R-CNN RoI sampling seed of the measured batches
EXIT_ERROR = 2


@dataclasses.dataclass(frozen=True)
class TermBalance:
    """One loss term, averaged over the measured batches.

    Attributes:
        name: the term's name (Mask R-CNN ``LOSS_NAMES``, or a model output name).
        value: the unweighted loss.
        weight: its weight in the total loss.
        shared_norm: global norm of its unweighted gradient over the shared variables.
    """

    name: str
    value: float
    weight: float
    shared_norm: float

    @property
    def weighted_norm(self) -> float:
        """``weight * shared_norm``: the term's pull on the shared variables in the total."""
        return self.weight * self.shared_norm


def loss_terms(model: keras.Model, batch) -> tuple[dict[str, tf.Tensor], dict[str, float]]:
    """(unweighted loss terms, their weights in the total) of one training batch ``(x, y)``."""
    x, y = batch[0], batch[1] if len(batch) > 1 else None
    if isinstance(model, MaskRcnnTrainModel):
        return model.compute_losses(x, tf.constant(SAMPLING_SEED, tf.int32), training=True), model.loss_weights()
    if not isinstance(model.loss, dict):
        raise ValueError("per-term balance needs Mask R-CNN or a model compiled with one loss per output")
    predicted = model(x, training=True)
    terms = {name: loss(y[name], predicted[name]) for name, loss in model.loss.items()}
    return terms, {name: 1.0 for name in terms}


def loss_balance(model: keras.Model, batches: Sequence) -> tuple[TermBalance, ...]:
    """Per-term loss values and gradient norms on the shared variables, averaged over ``batches``.

    Args:
        model: a compiled training model (fresh or with trained weights); not modified.
        batches: training batches ``(x, y)`` of ``trainer.make_train_dataset``.

    Returns:
        One ``TermBalance`` per term, in the model's term order.
    """
    variables = model.trainable_variables
    values: dict[str, list[float]] = {}
    gradients: dict[str, list[list]] = {}
    weights: dict[str, float] = {}
    for batch in batches:
        with tf.GradientTape(persistent=True) as tape:
            terms, weights = loss_terms(model, batch)
        for name, term in terms.items():
            values.setdefault(name, []).append(float(term))
            gradients.setdefault(name, []).append(tape.gradient(term, variables))
        del tape
    reached = [sum(any(g[i] is not None for g in per_batch) for per_batch in gradients.values())
               for i in range(len(variables))]
    shared = [i for i, count in enumerate(reached) if count >= 2]
    result = []
    for name, per_batch in gradients.items():
        norms = [float(tf.linalg.global_norm([g[i] for i in shared if g[i] is not None] or [tf.zeros([])]))
                 for g in per_batch]
        result.append(TermBalance(name, float(np.mean(values[name])), weights[name], float(np.mean(norms))))
    return tuple(result)


def format_balance(terms: Sequence[TermBalance]) -> str:
    """A table: value, weight, shared-gradient norm (raw and weighted) and share of the weighted total."""
    total = sum(term.weighted_norm for term in terms) or 1.0
    width = max(len("term"), *(len(term.name) for term in terms))
    lines = [f"{'term':<{width}} {'loss':>9} {'weight':>7} {'grad norm':>10} {'weighted':>10} {'share':>6}"]
    lines += [f"{term.name:<{width}} {term.value:9.4f} {term.weight:7.3g} {term.shared_norm:10.4g} "
              f"{term.weighted_norm:10.4g} {term.weighted_norm / total:6.1%}" for term in terms]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="python -m training.loss_balance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="training config (YAML)")
    parser.add_argument("--weights", type=Path, help="a training checkpoint of the same config, "
                        "OUT/checkpoints/last.keras (default: the seeded initial weights)")
    parser.add_argument("--batches", type=positive_int, default=DEFAULT_BATCHES, help="batches to average over")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        train, _ = trainer.load_data(config)
        config = trainer.resolve_schedule(config, len(train))
        model = trainer.build_compiled(config)
        if args.weights is not None:
            model.set_weights(keras.models.load_model(args.weights, compile=False).get_weights())
    except (OSError, ValueError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    batches = list(trainer.make_train_dataset(config, train).take(args.batches))
    source = args.weights or "initial weights (seed %d)" % config.seed
    print(f"{config.model.value}, {source}, {args.batches} training batches of {config.data.batch_size}:")
    print(format_balance(loss_balance(model, batches)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
