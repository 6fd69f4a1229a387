"""Tests for ``python -m edge_demo.benchmark``: interleaving, statistics and the ratio report."""

import json
import re

import numpy as np
import pytest

from edge_demo import benchmark
from edge_demo.app import LoadedModel
from tfsp.runtime.timing import StageTimings
from tfsp.spec import QuantMode

RATIO_LINE = re.compile(r"^ratio (\w+)/(\w+): median inference (\d+\.\d\d)x, median total (\d+\.\d\d)x, "
                        r"size (\d+\.\d\d)x$", re.M)


def test_round_robin_rotates_the_first_model():
    assert [benchmark.round_robin_order(3, r) for r in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    positions = np.array([benchmark.round_robin_order(3, r) for r in range(3)])
    for model in range(3):  # over 3 rounds every model runs once in every position
        assert sorted(np.nonzero(positions == model)[1]) == [0, 1, 2]


class _FakeSpec:
    quantization = QuantMode.FP32


def _fake_model(tmp_path, name, size, inference_ms, calls):
    """A LoadedModel whose pipeline records (name, image id) and returns scripted timings."""
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(b"x" * size)
    times = iter(inference_ms)

    def pipeline(image):
        calls.append((name, int(image[0, 0, 0])))
        return None, StageTimings(1.0, next(times), 0.5)

    return LoadedModel(path, _FakeSpec(), None, pipeline)


def test_benchmark_interleaves_skips_warmup_and_computes_statistics(tmp_path):
    calls = []
    images = [np.full((4, 4, 3), k, np.uint8) for k in range(2)]
    a = _fake_model(tmp_path, "a", 100, [99.0, 10.0, 20.0, 30.0, 40.0], calls)
    b = _fake_model(tmp_path, "b", 25, [99.0, 5.0, 6.0, 7.0, 8.0], calls)
    results = benchmark.benchmark([a, b], images, runs=4, warmup=1)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 0), ("b", 0), ("b", 1), ("a", 1),
                     ("a", 0), ("b", 0)]
    assert [r.size_bytes for r in results] == [100, 25]
    np.testing.assert_array_equal(results[0].stages_ms[:, 1], [10.0, 20.0, 30.0, 40.0])  # warm-up 99 dropped
    assert results[0].median("inference") == 25.0 and results[1].median("inference") == 6.5
    assert results[0].p90("inference") == pytest.approx(37.0)  # 30 + 0.7 * (40 - 30)
    assert results[0].median("total") == 26.5 and results[0].median("preprocess") == 1.0
    report = benchmark.to_json(results, {})
    assert [m["inference_ratio"] for m in report["models"]] == [1.0, 0.26]
    assert report["models"][1]["total_ratio"] == pytest.approx(8.0 / 26.5)
    assert "ratio b/a: median inference 0.26x, median total 0.30x, size 0.25x" in benchmark.format_table(results)


def test_benchmark_cli_on_two_tiny_models(tiny_exports, image_dir, tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    code = benchmark.main(["--models", str(tiny_exports.fp32), str(tiny_exports.int8), "--source", str(image_dir),
                           "--runs", "6", "--warmup", "1", "--threads", "1", "--json", str(report_path)])
    stdout = capsys.readouterr().out
    assert code == benchmark.EXIT_OK
    (ratio,) = RATIO_LINE.findall(stdout)
    assert ratio[:2] == ("tiny_int8", "tiny_fp32")
    report = json.loads(report_path.read_text())
    assert report["settings"]["runs"] == 6 and report["settings"]["images"] == 3
    fp32, int8 = report["models"]
    assert (fp32["quantization"], int8["quantization"]) == ("FP32", "INT8")
    assert fp32["size_bytes"] == tiny_exports.fp32.stat().st_size and int8["size_bytes"] < fp32["size_bytes"]
    assert fp32["inference_ratio"] == 1.0
    assert int8["inference_ratio"] == pytest.approx(int8["inference_ms"]["median"] / fp32["inference_ms"]["median"])
    assert float(ratio[2]) == pytest.approx(int8["inference_ratio"], abs=0.006)
    assert float(ratio[4]) == pytest.approx(int8["size_bytes"] / fp32["size_bytes"], abs=0.006)
    for model in report["models"]:
        assert 0 < model["inference_ms"]["median"] <= model["inference_ms"]["p90"]


def test_benchmark_errors(tiny_exports, tmp_path, capsys):
    assert benchmark.main(["--models", str(tiny_exports.fp32), "--source", str(tmp_path / "none")]) == 1
    assert "source not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.main(["--model", str(tiny_exports.fp32), "--source", str(tmp_path)])
    assert "--model (did you mean --models?)" in capsys.readouterr().err
