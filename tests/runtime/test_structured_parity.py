"""Keras vs TFLite after the shared postprocess, for dense and attribute graphs (tiny, seeded, untrained).

Dense: the label maps on the original pixels agree on >= 99.5 % of the pixels (the issue's bar; fp32 gives
all of them here) and depth within 1e-3 m; int8 agrees on most pixels. Attributes: the sigmoid scores
of the same boxes agree within 1e-4 (fp32) and 0.05 (int8).
"""

import keras
import numpy as np
import pytest

from export.convert import export_model
from export.calibration import calibration_images
from tfsp.data.coco import load_split
from tfsp.models.attributes import AttributeConfig, build_attribute_model
from tfsp.models.dense import DenseConfig, build_dense
from tfsp.runtime.attributes import AttributePipeline
from tfsp.runtime.dense import DensePipeline
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.preprocess import read_image_rgb
from tfsp.runtime.tflite_runner import TFLiteRunner
from tfsp.spec import AttributeHead, QuantMode
from tfsp.spec_builders import attribute_spec, dense_spec

SIZE = 64
SEED = 0
MIN_EQUAL_LABELS = 0.995
FP32_DEPTH_ATOL_M = 1e-3
INT8_MIN_EQUAL_LABELS = 0.8
FP32_SCORE_ATOL = 1e-4
INT8_SCORE_ATOL = 0.05
CALIBRATION = 16


@pytest.fixture(scope="module")
def dense_models(synth_data, tmp_path_factory):
    keras.utils.set_random_seed(SEED)
    train = load_split(synth_data, "train")
    config = DenseConfig(input_size=SIZE, num_classes=train.num_classes)
    model = build_dense(config)
    spec = dense_spec(SIZE, config.map_size, train.class_names, train.category_ids)
    out = tmp_path_factory.mktemp("dense_parity")
    fp32 = export_model(model, spec, QuantMode.FP32, out, "dense_fp32")
    int8 = export_model(model, spec, QuantMode.INT8, out, "dense_int8", calibration_images(synth_data, spec, CALIBRATION))
    return model, spec, fp32, int8


def test_dense_keras_and_tflite_give_the_same_maps(dense_models, synth_data):
    model, spec, fp32, int8 = dense_models
    keras_pipeline = DensePipeline(KerasRunner(model), spec)
    fp32_pipeline = DensePipeline(TFLiteRunner(fp32.tflite_path), spec)
    int8_pipeline = DensePipeline(TFLiteRunner(int8.tflite_path), int8.spec)
    for record in load_split(synth_data, "val").records:
        image = read_image_rgb(record.path)
        reference, lite, quantised = keras_pipeline(image), fp32_pipeline(image), int8_pipeline(image)
        equal = np.mean(reference.semantic.values == lite.semantic.values)
        assert equal >= MIN_EQUAL_LABELS, equal
        np.testing.assert_allclose(lite.depth.values, reference.depth.values, atol=FP32_DEPTH_ATOL_M)
        assert np.mean(reference.semantic.values == quantised.semantic.values) >= INT8_MIN_EQUAL_LABELS


@pytest.fixture(scope="module")
def attribute_models(synth_data, tmp_path_factory):
    keras.utils.set_random_seed(SEED)
    train = load_split(synth_data, "train")
    config = AttributeConfig(image_size=SIZE, crop_size=32, canvas_px=32.0,
                             num_attributes=len(train.attribute_names), widths=(8, 16, 16))
    model = build_attribute_model(config)
    names = train.attribute_names
    spec = attribute_spec(AttributeHead(names, (0.5,) * len(names), SIZE, config.crop_config),
                          train.class_names, train.category_ids)
    out = tmp_path_factory.mktemp("attribute_parity")
    fp32 = export_model(model, spec, QuantMode.FP32, out, "attributes_fp32")
    int8 = export_model(model, spec, QuantMode.INT8, out, "attributes_int8",
                        calibration_images(synth_data, spec, CALIBRATION))
    return model, spec, fp32, int8


def test_attribute_keras_and_tflite_give_the_same_scores(attribute_models, synth_data):
    model, spec, fp32, int8 = attribute_models
    pipelines = [AttributePipeline(KerasRunner(model), spec), AttributePipeline(TFLiteRunner(fp32.tflite_path), spec),
                 AttributePipeline(TFLiteRunner(int8.tflite_path), int8.spec)]
    compared = 0
    for record in load_split(synth_data, "val").records:
        image = read_image_rgb(record.path)
        reference, lite, quantised = (p.classify_timed(image, record.boxes_xyxy)[0] for p in pipelines)
        np.testing.assert_allclose(lite.scores, reference.scores, atol=FP32_SCORE_ATOL)
        np.testing.assert_allclose(quantised.scores, reference.scores, atol=INT8_SCORE_ATOL)
        compared += len(reference)
    assert compared > 0
