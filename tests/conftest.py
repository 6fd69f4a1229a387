"""Shared fixtures: a hand-written tiny COCO set with known answers, and a generated synthetic set."""

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

TINY_SIZES = {1: (48, 64), 2: (40, 40), 3: (32, 48)}  # image id -> (height, width)
SYNTH_TRAIN, SYNTH_VAL, SYNTH_SIZE = 8, 4, 96
TINY_JPEG_QUALITY = 95


def _rect_polygon(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _person_keypoints() -> list[float]:
    """17 keypoints inside the person box [36, 4, 56, 44]; left side at smaller x than right."""
    rows = []
    for k in range(17):
        side = 0 if k == 0 else (1 if k % 2 == 1 else 2)  # 1 = left, 2 = right
        x = 46.0 + {0: 0.0, 1: -4.0, 2: 4.0}[side]
        y = 6.0 + 2.0 * k
        visibility = 0 if k in (3, 4) else 2  # ears unlabelled
        rows += [x, y, visibility] if visibility else [0.0, 0.0, 0]
    return rows


def _tiny_coco_json() -> tuple[dict, dict]:
    """Instances and person-keypoints JSON of the tiny set (before writing)."""
    images = [{"id": i, "file_name": f"{i:04d}.{'png' if i == 2 else 'jpg'}", "height": h, "width": w,
               "dense": {"semantic": f"dense/semantic/{i:04d}.png", "depth": f"dense/depth/{i:04d}.png"}}
              for i, (h, w) in TINY_SIZES.items()]
    crowd_mask = np.zeros((32, 48), np.uint8, order="F")
    crowd_mask[4:12, 6:20] = 1
    counts, run, last = [], 0, 0
    for value in crowd_mask.flatten(order="F"):
        if value != last:
            counts.append(run)
            run, last = 0, value
        run += 1
    counts.append(run)
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 2, "bbox": [10, 8, 20, 12], "iscrowd": 0,
         "segmentation": _rect_polygon(10, 8, 30, 20), "attribute_ids": [7]},
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [36, 4, 20, 40], "iscrowd": 0,
         "segmentation": _rect_polygon(36, 4, 56, 44), "attribute_ids": [3, 7]},
        {"id": 12, "image_id": 1, "category_id": 3, "bbox": [50, 30, 30, 30], "iscrowd": 0,  # clipped
         "segmentation": _rect_polygon(50, 30, 64, 48)},
        {"id": 13, "image_id": 1, "category_id": 3, "bbox": [70, 10, 5, 5], "iscrowd": 0},  # outside: dropped
        {"id": 14, "image_id": 1, "category_id": 2, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero width: dropped
        {"id": 30, "image_id": 3, "category_id": 2, "bbox": [6, 4, 14, 8], "iscrowd": 1,
         "segmentation": {"size": [32, 48], "counts": counts}},
    ]
    categories = [{"id": 3, "name": "square"}, {"id": 1, "name": "person"}, {"id": 2, "name": "circle"}]
    attributes = [{"id": 7, "name": "red"}, {"id": 3, "name": "filled"}]
    instances = {"images": images, "annotations": annotations, "categories": categories, "attributes": attributes}
    keypoints = {"images": images, "categories": [{"id": 1, "name": "person"}],
                 "annotations": [{"id": 11, "image_id": 1, "category_id": 1, "bbox": [36, 4, 20, 40],
                                  "keypoints": _person_keypoints(), "num_keypoints": 15}]}
    return instances, keypoints


def _write_tiny_coco(root: Path, instances: dict | None = None, keypoints: dict | None = None) -> SimpleNamespace:
    """Writes the tiny set (textured images, JSON, dense maps) under ``root``."""
    default_instances, default_keypoints = _tiny_coco_json()
    instances = default_instances if instances is None else instances
    keypoints = default_keypoints if keypoints is None else keypoints
    rng = np.random.default_rng(0)
    for sub in ("images", "annotations", "dense/semantic", "dense/depth"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image in default_instances["images"]:
        height, width = image["height"], image["width"]
        yy, xx = np.mgrid[0:height, 0:width]
        rgb = np.stack([4 * xx, 5 * yy, 2 * (xx + yy)], axis=-1) + rng.integers(0, 40, (height, width, 3))
        bgr = np.clip(rgb, 0, 255).astype(np.uint8)[..., ::-1]
        params = [cv2.IMWRITE_JPEG_QUALITY, TINY_JPEG_QUALITY] if image["file_name"].endswith(".jpg") else []
        cv2.imwrite(str(root / "images" / image["file_name"]), bgr, params)
        semantic = np.zeros((height, width), np.uint8)
        for ann in default_instances["annotations"]:
            x, y, w, h = (int(v) for v in ann["bbox"])
            if ann["image_id"] == image["id"]:
                semantic[y:y + h, x:x + w] = ann["category_id"]
        cv2.imwrite(str(root / image["dense"]["semantic"]), semantic)
        cv2.imwrite(str(root / image["dense"]["depth"]), (1000 + 10 * xx + yy).astype(np.uint16))
    instances_json, keypoints_json = root / "annotations" / "instances.json", root / "annotations" / "keypoints.json"
    instances_json.write_text(json.dumps(instances))
    keypoints_json.write_text(json.dumps(keypoints))
    return SimpleNamespace(root=root, image_dir=root / "images", instances_json=instances_json,
                           keypoints_json=keypoints_json)


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The tiny hand-written COCO set: 3 images (one negative), known boxes/keypoints/masks."""
    return _write_tiny_coco(tmp_path_factory.mktemp("tiny_coco"))


@pytest.fixture()
def tiny_coco_json() -> tuple[dict, dict]:
    """Fresh (instances, person-keypoints) JSON objects of the tiny set, free to mutate."""
    return _tiny_coco_json()


@pytest.fixture(scope="session")
def write_tiny_coco():
    """``write(root, instances=None, keypoints=None) -> paths``: writes a (possibly mutated) tiny set."""
    return _write_tiny_coco


@pytest.fixture(scope="session")
def tiny_dataset(tiny_coco: SimpleNamespace):
    """The tiny set loaded with :func:`tfsp.data.coco.load_coco`."""
    from tfsp.data.coco import load_coco

    return load_coco(tiny_coco.instances_json, tiny_coco.image_dir, tiny_coco.keypoints_json)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated synthetic set: 8 train / 4 val images of 96 px (root directory)."""
    from tfsp.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synth") / "synth", SYNTH_TRAIN, SYNTH_VAL,
                            image_size=SYNTH_SIZE, seed=0, progress=False)


TINY_RCNN_SIZE = 64


@pytest.fixture(scope="session")
def tiny_rcnn(synth_data: Path) -> SimpleNamespace:
    """An untrained tiny Mask R-CNN chain for the synthetic classes: Keras stage 1 and heads, a spec, and
    ``chain(keypoints=True)`` building their ``GraphChain`` of Keras runners.

    64 px input, MobileNetV2 alpha 0.35, FPN 16 channels, narrow one-conv heads; thresholds so permissive
    (box score > 0.05, 5 detections) that the seeded weights give detections, masks and poses.
    """
    import keras

    from tfsp.data.coco import load_split
    from tfsp.models.mask_rcnn import MaskRcnnConfig, build_stage1
    from tfsp.models.mask_rcnn_heads import build_box_head, build_keypoint_head, build_mask_head
    from tfsp.postprocess.rcnn import BoxHeadConfig, RpnProposalConfig
    from tfsp.runtime.graph_chain import KEYPOINT_HEAD_GRAPH, GraphChain
    from tfsp.runtime.keras_runner import KerasRunner
    from tfsp.spec_builders import instance_segmentation_spec

    dataset = load_split(synth_data, "val")
    config = MaskRcnnConfig(input_size=TINY_RCNN_SIZE, num_classes=dataset.num_classes, alpha=0.35, fpn_channels=16,
                            levels=(2, 3, 4, 5), anchor_sizes_px=(8.0, 16.0, 32.0, 64.0), box_fc=32,
                            mask_head_channels=16, mask_head_convs=1, keypoint_head_channels=16,
                            keypoint_head_convs=1)
    keras.utils.set_random_seed(0)
    heads = {"box_head": build_box_head(config), "mask_head": build_mask_head(config),
             "keypoint_head": build_keypoint_head(config)}
    spec = instance_segmentation_spec(config, dataset.class_names, dataset.category_ids,
                                      proposals=RpnProposalConfig(pre_nms_top_k=50, post_nms_top_k=20),
                                      box_head=BoxHeadConfig(score_threshold=0.05, max_detections=5))
    stage1 = build_stage1(config)

    def chain(keypoints: bool = True) -> GraphChain:
        """The Keras chain of stage 1 and the heads (without the keypoint head unless ``keypoints``)."""
        return GraphChain(KerasRunner(stage1), {name: KerasRunner(model) for name, model in heads.items()
                                                if keypoints or name != KEYPOINT_HEAD_GRAPH})

    return SimpleNamespace(config=config, stage1=stage1, heads=heads, spec=spec, dataset=dataset, chain=chain)
