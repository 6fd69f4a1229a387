"""Training and evaluation CLIs over testable library functions.

    python -m training --config training/configs/ssd_synth.yaml [--out runs/ssd] [--epochs N | --steps N]
        [--resume] [--data data/synth]
    python -m training.evaluate --model runs/ssd/model.keras --data data/synth

Modules: `config` (typed config + YAML), `recipes` (model kinds -> builders, losses,
targets, ModelSpec), `trainer` (fit loop), `callbacks` (checkpoints, COCO
evaluation), `evaluate` (device-pipeline COCO evaluation), `plots` (loss curves).
This package module imports nothing heavy.
"""

import os as _os

# Hide TensorFlow's C++ INFO/WARNING start-up lines in these CLIs (errors still show); an explicit setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
