"""Attribute thresholds tuned after training: F1-best cuts on training objects, written into the spec."""

import dataclasses

import keras
import numpy as np

from tfsp.attribute_metrics import attribute_metrics
from tfsp.data.coco import load_split
from tfsp.models.attributes import AttributeConfig, build_attribute_model
from tfsp.runtime.attributes import AttributePipeline
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.spec import AttributeHead
from tfsp.spec_builders import attribute_spec
from training.attribute_thresholds import DEFAULT_ATTRIBUTE_THRESHOLD, tune_attribute_thresholds
from training.eval_structured import score_ground_truth_objects


def test_tuned_thresholds_maximise_f1_on_the_training_objects(synth_data):
    keras.utils.set_random_seed(0)
    train = load_split(synth_data, "train")
    config = AttributeConfig(image_size=96, crop_size=32, canvas_px=48.0, widths=(8, 16, 16))
    model = build_attribute_model(config)
    names = train.attribute_names
    spec = attribute_spec(AttributeHead(names, (DEFAULT_ATTRIBUTE_THRESHOLD,) * len(names), 96, config.crop_config),
                          train.class_names, train.category_ids)
    tuned = tune_attribute_thresholds(model, spec, train)
    assert dataclasses.replace(tuned, attributes=spec.attributes) == spec  # only the thresholds change
    assert tuned.attributes.thresholds != spec.attributes.thresholds

    scores, labels, _ = score_ground_truth_objects(AttributePipeline(KerasRunner(model), spec), train.records)
    before = attribute_metrics(scores, labels, names, np.asarray(spec.attributes.thresholds))
    after = attribute_metrics(scores, labels, names, np.asarray(tuned.attributes.thresholds))
    assert after["mean_F1"] >= before["mean_F1"]
    for name, present in zip(names, labels.any(axis=0)):
        if present:
            assert after[f"F1_{name}"] >= before[f"F1_{name}"]
