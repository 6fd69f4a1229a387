"""The device side must import and work without TensorFlow or Keras installed.

Each check runs in a fresh interpreter whose import system refuses
``tensorflow``, ``keras`` and ``tf_keras`` (as if they were not installed), so an
indirect import anywhere in the device modules fails the test.
"""

import json
import pathlib
import pkgutil
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "keras", "tf_keras")

_BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"{{name}} is blocked: device code must not import it")
            return None
    sys.meta_path.insert(0, _Block())
    sys.path.insert(0, {str(REPO)!r})
    """
)


def _device_modules() -> list[str]:
    """Every device-side module, found on disk so new ones are covered."""
    names = ["tfsp", "tfsp.structures", "tfsp.spec", "tfsp.viz", "tfsp.cli", "tfsp.fileio", "tfsp.data.keypoints",
             "tfsp.runtime.preprocess", "tfsp.runtime.runner", "tfsp.runtime.tflite_runner",
             "tfsp.runtime.detection", "tfsp.runtime.pose", "tfsp.runtime.timing", "tfsp.data.pose_fields",
             "tfsp.runtime.dense", "tfsp.runtime.attributes", "tfsp.runtime.mask_rcnn", "tfsp.spec_builders",
             "tfsp.spec_json", "tfsp.spec_rcnn", "tfsp.spec_tensor", "tfsp.runtime.graph_chain",
             "tfsp.runtime.mask_rcnn_config",
             "tfsp.dense_metrics", "tfsp.postprocess", "tfsp.attribute_metrics"]
    names += [f"tfsp.postprocess.{m.name}" for m in pkgutil.iter_modules([str(REPO / "tfsp/postprocess")])]
    edge = REPO / "edge_demo"
    if edge.is_dir():
        names += ["edge_demo"] + [f"edge_demo.{m.name}" for m in pkgutil.iter_modules([str(edge)])]
    return [n for n in names if (REPO / (n.replace(".", "/") + ".py")).exists()
            or (REPO / n.replace(".", "/") / "__init__.py").exists()]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKER + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_blocker_really_blocks():
    result = _run("import tensorflow")
    assert result.returncode != 0
    assert "blocked" in result.stderr


def test_device_modules_import_without_tensorflow():
    modules = _device_modules()
    assert "tfsp.structures" in modules and "tfsp.postprocess.boxes" in modules
    assert "tfsp.postprocess.dense" in modules and "tfsp.dense_metrics" in modules
    assert "tfsp.postprocess.attributes" in modules and "tfsp.attribute_metrics" in modules
    assert "tfsp.runtime.dense" in modules and "tfsp.runtime.attributes" in modules and "edge_demo.tasks" in modules
    result = _run(f"""
        import importlib, json
        for name in {modules!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(m for m in __import__('sys').modules if m.split('.')[0] in {BLOCKED!r})))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_device_postprocess_works_without_tensorflow():
    result = _run("""
        import numpy as np
        from tfsp.postprocess.boxes import nms, iou_xyxy
        from tfsp.structures import Detections
        boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
        scores = np.array([0.9, 0.8, 0.7], np.float32)
        keep = nms(boxes, scores, iou_threshold=0.5)
        det = Detections(boxes_xyxy=boxes[keep], scores=scores[keep],
                         class_ids=np.zeros(len(keep), np.int32))
        print(list(map(int, keep)), len(det), round(float(iou_xyxy(boxes[:1], boxes[1:2])[0, 0]), 4))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["[0,", "2]", "2", "0.81"]
