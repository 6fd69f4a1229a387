"""Mask R-CNN through the generic trainer: four graphs saved, chain evaluation, interruption and resume, export."""

import json

import numpy as np
import pytest

from export.cli import main as export_main
from tfsp.models.mask_rcnn import MaskRcnnConfig
from tfsp.runtime.graph_chain import HEAD_GRAPHS, GraphChain, head_path
from tfsp.runtime.runner import open_runner
from tfsp.spec import ModelSpec, Task
from training.callbacks import read_state
from training.config import DataConfig, EvalConfig, ModelKind, ScheduleConfig, TrainConfig
from training.evaluate import main as evaluate_main
from training.trainer import train
from tests.training.test_train import Interrupt, InterruptAfter

TINY_SIZE = 64
EPOCHS, STOP_AFTER, BATCH, STEPS = 2, 1, 2, 2
TINY_MASK_RCNN = MaskRcnnConfig(
    input_size=TINY_SIZE, num_classes=4, alpha=0.35, fpn_channels=16, levels=(2, 3, 4, 5),
    anchor_sizes_px=(8.0, 16.0, 32.0, 64.0), box_fc=32, mask_head_channels=16, mask_head_convs=1,
    keypoint_head_channels=16, keypoint_head_convs=1, roi_batch_size=16, train_pre_nms_top_k=64,
    train_post_nms_top_k=32)


@pytest.fixture(scope="module")
def run(synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mask_rcnn_run")
    config = TrainConfig(
        model=ModelKind.MASK_RCNN, mask_rcnn=TINY_MASK_RCNN,
        data=DataConfig(root=str(synth_data), batch_size=BATCH, max_instances=8),
        schedule=ScheduleConfig(epochs=EPOCHS, steps_per_epoch=STEPS), eval=EvalConfig(every_epochs=0, max_images=2),
        out_dir=str(out))
    with pytest.raises(Interrupt):
        train(config, extra_callbacks=[InterruptAfter(STOP_AFTER)], verbose=0)
    interrupted = read_state(out)
    result = train(config, resume=True, verbose=0)
    return config, interrupted, result


def test_interrupted_mask_rcnn_resumes_to_the_end(run):
    _, interrupted, result = run
    assert interrupted.epoch == STOP_AFTER
    assert result.state.epoch == EPOCHS
    losses = result.state.losses
    for name in ("loss", "rpn_objectness_loss", "rpn_box_loss", "box_class_loss", "box_regression_loss",
                 "mask_loss", "keypoint_loss"):
        assert len(losses[name]) == EPOCHS and np.all(np.isfinite(losses[name])), name


def test_run_saves_the_four_graphs_and_a_chain_spec(run):
    config, _, result = run
    assert result.model_path.name == "model.keras"
    for graph in HEAD_GRAPHS:
        assert head_path(result.model_path, graph).is_file(), graph
    spec = ModelSpec.from_json(result.run_dir / "spec.json")
    assert spec.task is Task.INSTANCE_SEGMENTATION
    assert spec.rcnn.person_class_id == 0 and spec.rcnn.head_names == HEAD_GRAPHS
    runner = open_runner(result.model_path)
    assert isinstance(runner, GraphChain) and set(runner.heads) == set(HEAD_GRAPHS)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    stats = metrics["instances"]
    assert {"mask_AP", "box_AP", "kp_AP"} <= set(stats)
    assert all(-1.0 <= value <= 1.0 for value in stats.values())


def test_evaluate_cli_on_the_saved_chain_reproduces_the_training_metrics(run, tmp_path):
    config, _, result = run
    out = tmp_path / "stats.json"
    assert evaluate_main(["--model", str(result.model_path), "--data", config.data.root, "--max-images", "2",
                          "--out", str(out)]) == 0
    stats = json.loads(out.read_text())["instances"]
    assert stats == pytest.approx(result.metrics["instances"], abs=1e-6)


def test_export_cli_writes_every_graph_of_the_trained_run(run, tmp_path):
    config, _, result = run
    assert export_main(["--run", str(result.run_dir), "--quant", "fp32", "--out", str(tmp_path),
                        "--data", config.data.root]) == 0
    main = next(tmp_path.glob("*.json")).with_suffix(".tflite")
    assert main.is_file()
    for graph in HEAD_GRAPHS:
        assert head_path(main, graph).is_file(), graph
    exported = ModelSpec.from_json(main.with_suffix(".json")).rcnn
    trained = ModelSpec.from_json(result.run_dir / "spec.json").rcnn
    for field in ("anchors", "proposals", "box_head", "person_class_id", "mask_threshold", "head_names"):
        assert getattr(exported, field) == getattr(trained, field), field
