"""The edge demo runs in a virtual environment built from ``requirements-edge.txt`` alone.

The venv is cached under ``.cache/venv-edge-<hash>`` (gitignored), keyed by the hash of
``requirements-edge.txt`` and the Python version, so only the first run pays for
``pip install``; a ``.complete`` marker is written last, so an interrupted build is redone.
pip uses its normal configuration (index, find-links, constraints).
"""

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_demo import app
from tfsp.viz import draw_detections

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements-edge.txt"
CACHE_DIR = REPO / ".cache"
COMPLETE_MARKER = ".complete"
HASH_CHARS = 16
VENV_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 300
SCORE = 0.1
NOT_INSTALLED = ("tensorflow", "keras", "tf_keras", "pycocotools", "matplotlib", "yaml")
"""Full-environment packages that must be absent from the device environment."""
NOT_IMPORTED = NOT_INSTALLED + ("tqdm",)
"""Packages the demo must not import (tqdm is installed: ai-edge-litert depends on it)."""
IMPORT_TIME_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", re.M)
"""A ``python -X importtime`` stderr line; the group is the imported module."""
MS_LINE = re.compile(r"preprocess \d+\.\d\d ms  inference \d+\.\d\d ms  postprocess \d+\.\d\d ms")


def _venv_path() -> Path:
    key = REQUIREMENTS.read_bytes() + f"{sys.version_info.major}.{sys.version_info.minor}".encode()
    return CACHE_DIR / f"venv-edge-{hashlib.sha256(key).hexdigest()[:HASH_CHARS]}"


def _clean_env() -> dict[str, str]:
    """The environment minus anything that could leak the full venv's packages in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=REPO, env=_clean_env(),
                          timeout=kwargs.pop("timeout", RUN_TIMEOUT_S), **kwargs)


@pytest.fixture(scope="module")
def edge_python() -> Path:
    """The ``python`` of the cached edge venv (built on first use, under a file lock)."""
    venv = _venv_path()
    python = venv / "bin" / "python"
    CACHE_DIR.mkdir(exist_ok=True)
    with open(CACHE_DIR / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / COMPLETE_MARKER).is_file():
            start = time.perf_counter()
            shutil.rmtree(venv, ignore_errors=True)
            for args in ([sys.executable, "-m", "venv", venv],
                         [python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS]):
                result = _run(args, timeout=VENV_TIMEOUT_S)
                assert result.returncode == 0, f"{args}: {result.stderr[-3000:]}"
            (venv / COMPLETE_MARKER).write_text(f"built in {time.perf_counter() - start:.1f} s\n")
    return python


def test_edge_venv_holds_only_the_edge_requirements(edge_python):
    result = _run([edge_python, "-c", "import tensorflow"])
    assert result.returncode != 0 and "No module named 'tensorflow'" in result.stderr
    probe = ("import importlib.util; print(' '.join(n for n in %r if importlib.util.find_spec(n)))" % (NOT_INSTALLED,))
    result = _run([edge_python, "-c", probe])
    assert result.returncode == 0 and result.stdout.split() == []
    frozen = _run([edge_python, "-m", "pip", "freeze"]).stdout.lower().replace("_", "-").split()
    pins = [line.split("#")[0].strip().lower() for line in REQUIREMENTS.read_text().splitlines()]
    assert [pin for pin in pins if pin and pin not in frozen] == []


def test_edge_demo_runs_in_edge_venv(edge_python, tiny_exports, image_dir, tmp_path):
    image, out = image_dir / "001.png", tmp_path / "out"
    result = _run([edge_python, "-X", "importtime", "-m", "edge_demo", "--model", tiny_exports.int8,
                   "--source", image, "--out", out, "--threads", "1", "--score", SCORE])
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {name.split(".")[0] for name in IMPORT_TIME_LINE.findall(result.stderr)}
    assert {"edge_demo", "tfsp", "cv2", "ai_edge_litert"} <= imported and not imported & set(NOT_IMPORTED)
    assert len(MS_LINE.findall(result.stdout)) == 1 and "summary: 1 frames" in result.stdout
    assert [p.name for p in out.iterdir()] == ["001.png"]
    original = cv2.imread(str(image))[..., ::-1]
    written = cv2.imread(str(out / "001.png"))[..., ::-1]
    model = app.load_model(tiny_exports.int8, threads=1, score_threshold=SCORE)
    detections, _ = model.pipeline(original)
    expected = draw_detections(original, detections, model.spec.class_names)
    assert len(detections) > 0 and np.any(expected[:len(original)] != original)
    np.testing.assert_array_equal(written[:len(expected)], expected)  # same as the full venv


def test_benchmark_runs_in_edge_venv(edge_python, tiny_exports, image_dir):
    result = _run([edge_python, "-m", "edge_demo.benchmark", "--models", tiny_exports.fp32, tiny_exports.int8,
                   "--source", image_dir, "--runs", "3", "--warmup", "0"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio tiny_int8/tiny_fp32: median inference" in result.stdout
