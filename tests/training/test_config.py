"""Tests for training.config: YAML round trips, strict keys with suggestions, shipped configs."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from tfsp.models.mask_rcnn_config import MASK_RCNN_SYNTH_CONFIG
from tfsp.models.ssd import SSD_SYNTH_CONFIG
from tfsp.runtime.preprocess import ResizeMode
from training.config import (
    ConfigError,
    DataConfig,
    ModelKind,
    OptimizerKind,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    save_config,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "training" / "configs" / "ssd_synth.yaml"


def _custom_config() -> TrainConfig:
    """A config that differs from the defaults in every section (including the SSD one)."""
    base = TrainConfig()
    return dataclasses.replace(
        base,
        ssd=dataclasses.replace(SSD_SYNTH_CONFIG, num_classes=SSD_SYNTH_CONFIG.num_classes + 1),
        data=dataclasses.replace(base.data, root="elsewhere", batch_size=3, resize=ResizeMode.STRETCH),
        optimizer=dataclasses.replace(base.optimizer, kind=OptimizerKind.ADAM, clipnorm=None,
                                      learning_rate=1e-5),
        schedule=dataclasses.replace(base.schedule, epochs=7, steps_per_epoch=2, warmup_epochs=0.5),
        eval=dataclasses.replace(base.eval, every_epochs=0, max_images=5),
        out_dir="runs/x",
        seed=42,
    )


def test_yaml_round_trip_is_exact(tmp_path):
    config = _custom_config()
    path = tmp_path / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config
    assert load_config(path).ssd.anchors == SSD_SYNTH_CONFIG.anchors
    # The dump is plain YAML: enums by value, tuples as lists, and it is stable.
    plain = yaml.safe_load(path.read_text())
    assert plain["model"] == "ssd" and plain["data"]["resize"] == config.data.resize.value
    assert plain["optimizer"]["kind"] == "adam" and plain["optimizer"]["clipnorm"] is None
    assert dump_config(load_config(path)) == path.read_text()


def test_defaults_live_in_the_dataclasses():
    assert config_from_dict({}) == TrainConfig()
    assert TrainConfig().ssd == SSD_SYNTH_CONFIG
    assert TrainConfig().model is ModelKind.SSD
    partial = config_from_dict({"data": {"batch_size": 2}})
    assert partial.data == DataConfig(batch_size=2)
    assert partial.ssd == SSD_SYNTH_CONFIG
    # Only the active model's section is dumped.
    assert set(config_to_dict(TrainConfig())) == {f.name for f in dataclasses.fields(TrainConfig)} - {
        "openpose", "dense", "attributes", "mask_rcnn"}


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "'data.batch_sise'" in message
    assert "did you mean 'data.batch_size'" in message


def test_unknown_top_level_and_nested_model_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'optimiser'; did you mean 'optimizer'"):
        config_from_dict({"optimiser": {}}, source="x.yaml")
    with pytest.raises(ConfigError, match=r"unknown key 'ssd.num_clases'; did you mean 'ssd.num_classes'"):
        config_from_dict({"ssd": {"num_clases": 3}}, source="x.yaml")
    with pytest.raises(ConfigError, match=r"unknown key 'zzz'") as error:
        config_from_dict({"zzz": 1})
    assert "did you mean" not in str(error.value)


def test_bad_values_are_clear_errors():
    with pytest.raises(ConfigError, match=r"'optimizer.kind' has unknown value 'adamx'; did you mean 'adam'"):
        config_from_dict({"optimizer": {"kind": "adamx"}}, source="x.yaml")
    with pytest.raises(ConfigError, match=r"'schedule.epochs' must be an integer"):
        config_from_dict({"schedule": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"'data' must be a mapping"):
        config_from_dict({"data": [1, 2]})
    # PyYAML reads 1e-3 (no dot) as a string; float fields still accept it.
    assert config_from_dict({"optimizer": {"learning_rate": "1e-3"}}).optimizer.learning_rate == 1e-3


def test_shipped_config_loads_and_is_a_full_dump():
    config = load_config(SHIPPED_CONFIG)
    assert config.model is ModelKind.SSD
    assert config.ssd == SSD_SYNTH_CONFIG
    assert yaml.safe_load(SHIPPED_CONFIG.read_text()) == config_to_dict(config)


def test_shipped_pose_config_loads_and_dumps_only_its_model_section():
    path = SHIPPED_CONFIG.parent / "openpose_synth.yaml"
    config = load_config(path)
    assert config.model is ModelKind.OPENPOSE and config.openpose.map_size == 32
    plain = yaml.safe_load(path.read_text())
    assert "ssd" not in plain and plain == config_to_dict(config)
    assert load_config(path) == config_from_dict(config_to_dict(config))


@pytest.mark.parametrize("name, kind, section", [("dense_synth.yaml", ModelKind.DENSE, "dense"),
                                                  ("attributes_synth.yaml", ModelKind.ATTRIBUTES, "attributes")])
def test_shipped_dense_and_attribute_configs_are_full_dumps_of_their_section(name, kind, section):
    path = SHIPPED_CONFIG.parent / name
    config = load_config(path)
    plain = yaml.safe_load(path.read_text())
    assert config.model is kind and plain == config_to_dict(config)
    assert set(plain) & {"ssd", "openpose", "dense", "attributes"} == {section}
    assert config.out_dir == f"runs/{section}"


def test_shipped_mask_rcnn_config_is_a_full_dump_of_the_synthetic_default():
    path = SHIPPED_CONFIG.parent / "mask_rcnn_synth.yaml"
    config = load_config(path)
    assert config.model is ModelKind.MASK_RCNN and config.mask_rcnn == MASK_RCNN_SYNTH_CONFIG
    assert yaml.safe_load(path.read_text()) == config_to_dict(config)
