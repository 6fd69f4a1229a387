"""`training.quant_attribution` on the tiny Mask R-CNN chain: which graphs run int8 in each row, and the table."""

import contextlib
import io

import pytest

from export.cli import main as export_main
from tests.export.test_export_rcnn import fp32_export, rcnn_run  # noqa: F401 (fixtures)
from tfsp.runtime.graph_chain import HEAD_GRAPHS, GraphChain
from tfsp.runtime.runner import open_runner
from tfsp.spec import ModelSpec
from tfsp.data.coco import load_split
from training.evaluate import evaluate_runner
from training.quant_attribution import (FP32_ROW, INT8_ROW, STAGE1_ROW, TABLE_TITLE, attribute, attribution_runners,
                                        main)

MAX_IMAGES = 2


@pytest.fixture(scope="module")
def chains(rcnn_run, fp32_export, tmp_path_factory):  # noqa: F811
    """(fp32 main file, int8 main file, data root) of the tiny chain's exports."""
    run, data, _ = rcnn_run
    out = tmp_path_factory.mktemp("exports_int8")
    with contextlib.redirect_stdout(io.StringIO()):
        assert export_main(["--run", str(run), "--quant", "int8", "--data", str(data), "--calibration-images", "4",
                            "--out", str(out), "--name", "maskrcnn"]) == 0
    return fp32_export[0] / "maskrcnn.tflite", out / "maskrcnn.tflite", data


def test_each_row_swaps_in_one_int8_graph(chains):
    fp32, int8 = (open_runner(path) for path in chains[:2])
    rows = attribution_runners(fp32, int8)
    assert list(rows) == [FP32_ROW, STAGE1_ROW, *HEAD_GRAPHS, INT8_ROW]
    assert rows[FP32_ROW] == (fp32, False) and rows[INT8_ROW] == (int8, True)
    stage1_row, int8_stage1 = rows[STAGE1_ROW]
    assert int8_stage1 and stage1_row.stage1 is int8.stage1
    assert all(stage1_row.heads[name] is fp32.heads[name] for name in HEAD_GRAPHS)
    for name in HEAD_GRAPHS:
        chain, int8_stage1 = rows[name]
        assert not int8_stage1 and chain.stage1 is fp32.stage1
        assert all(chain.heads[other] is (int8 if other == name else fp32).heads[other] for other in HEAD_GRAPHS)


def test_a_chain_and_a_single_graph_do_not_mix(chains):
    fp32, int8 = (open_runner(path) for path in chains[:2])
    with pytest.raises(ValueError, match="chain"):
        attribution_runners(fp32.stage1, int8)
    with pytest.raises(ValueError, match="different heads"):
        attribution_runners(fp32, GraphChain(int8.stage1, {HEAD_GRAPHS[0]: int8.heads[HEAD_GRAPHS[0]]}))


def test_end_rows_are_the_evaluations_of_each_export(chains):
    fp32_path, int8_path, data = chains
    dataset = load_split(data, "val")
    results = attribute(fp32_path, int8_path, data, "val", MAX_IMAGES)
    assert list(results) == [FP32_ROW, STAGE1_ROW, *HEAD_GRAPHS, INT8_ROW]
    for row, path in ((FP32_ROW, fp32_path), (INT8_ROW, int8_path)):
        expected = evaluate_runner(open_runner(path), ModelSpec.from_json(path.with_suffix(".json")), dataset,
                                   MAX_IMAGES)
        assert results[row].num_detections == expected.num_detections > 0
        assert results[row].stats == expected.stats


def test_cli_prints_one_row_per_graph(chains, capsys):
    fp32_path, int8_path, data = chains
    assert main(["--fp32", str(fp32_path), "--int8", str(int8_path), "--data", str(data),
                 "--max-images", str(MAX_IMAGES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith(TABLE_TITLE))):]
    assert [line.split()[0] for line in table[1:]] == ["none", STAGE1_ROW, *HEAD_GRAPHS, "all"]
    assert all(cell == "+0.00" for cell in table[1].split()[3::2])  # fp32 against itself
    assert len({len(line) for line in table}) == 1  # aligned


def test_cli_names_a_missing_file(tmp_path, capsys):
    assert main(["--fp32", str(tmp_path / "a.tflite"), "--int8", str(tmp_path / "b.tflite")]) == 2
    assert "a.tflite" in capsys.readouterr().err
