"""COCO loader: golden records from the tiny set, validation errors, corrupt-image skipping."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tfsp.data.coco import ImageRecord, load_coco, load_split, record_masks


def test_category_mapping_is_sorted_by_category_id(tiny_dataset):
    assert tiny_dataset.category_ids == (1, 2, 3)
    assert tiny_dataset.class_names == ("person", "circle", "square")
    assert tiny_dataset.attribute_names == ("filled", "red")  # attribute ids 3, 7


def test_boxes_clipped_and_zero_area_dropped_with_count(tiny_dataset):
    record = tiny_dataset.records[0]
    np.testing.assert_array_equal(record.boxes_xyxy, [[10, 8, 30, 20], [36, 4, 56, 44], [50, 30, 64, 48]])
    np.testing.assert_array_equal(record.class_ids, [1, 0, 2])
    assert record.boxes_xyxy.dtype == np.float32 and record.class_ids.dtype == np.int32
    assert tiny_dataset.num_dropped_boxes == 2  # one box outside the image, one of zero width
    np.testing.assert_array_equal(record.attribute_ids, [[0, 1], [1, 1], [0, 0]])


def test_negative_images_are_kept(tiny_dataset):
    assert [r.image_id for r in tiny_dataset.records] == [1, 2, 3]
    negative = tiny_dataset.records[1]
    assert len(negative) == 0 and negative.boxes_xyxy.shape == (0, 4) and negative.keypoints.shape == (0, 17, 3)
    assert record_masks(negative).shape == (0, 40, 40)


def test_keypoints_merged_by_annotation_id(tiny_dataset, tiny_coco_json):
    _, keypoints_json = tiny_coco_json
    expected = np.array(keypoints_json["annotations"][0]["keypoints"], np.float32).reshape(17, 3)
    record = tiny_dataset.records[0]
    np.testing.assert_array_equal(record.keypoints[1], expected)  # the person (annotation 11)
    assert not record.keypoints[[0, 2]].any()  # non-person instances: zeros


def test_crowd_rle_and_polygon_masks_decode_to_their_boxes(tiny_dataset):
    masks = record_masks(tiny_dataset.records[0])
    assert masks.shape == (3, 48, 64) and masks.dtype == np.uint8
    for mask, box in zip(masks, tiny_dataset.records[0].boxes_xyxy):
        rows, cols = np.nonzero(mask)
        # Pixels whose centres lie inside the box: [x0, x1) x [y0, y1).
        assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == tuple(box.astype(int))
    crowd = tiny_dataset.records[2]
    assert crowd.is_crowd.tolist() == [True]
    crowd_mask = record_masks(crowd)[0]
    assert crowd_mask.sum() == 8 * 14 and crowd_mask[4:12, 6:20].all()


def test_dense_paths_resolve_relative_to_root(tiny_coco, tiny_dataset):
    record = tiny_dataset.records[0]
    assert record.semantic_path == str(tiny_coco.root / "dense/semantic/0001.png")
    assert record.depth_path == str(tiny_coco.root / "dense/depth/0001.png")


def _set_bbox(data):
    data["annotations"][3]["bbox"] = [1, 2]


def _set(key, index, field, value):
    def mutate(data):
        data[key][index][field] = value
    return mutate


@pytest.mark.parametrize(
    ("mutate", "target", "message"),
    [
        (_set_bbox, "instances", r"instances.json: annotations\[3\].bbox must be 4 numbers, got \[1, 2\]"),
        (lambda d: d.pop("images"), "instances", r"instances.json: 'images' is missing"),
        (_set("annotations", 1, "image_id", 99), "instances", r"instances.json: annotations\[1\].image_id 99 is not"),
        (_set("annotations", 0, "category_id", 9), "instances", r"instances.json: annotations\[0\].category_id 9"),
        (_set("annotations", 0, "bbox", [1, 2, -3, 4]), "instances", r"annotations\[0\].bbox must have width"),
        (_set("images", 2, "height", 0), "instances", r"instances.json: images\[2\].height must be a positive"),
        (_set("annotations", 2, "id", 10), "instances", r"annotations\[2\].id duplicates id 10"),
        (_set("annotations", 0, "segmentation", [[1, "2", 3]]), "instances", r"annotations\[0\].segmentation\[0\]"),
        (_set("annotations", 0, "attribute_ids", [5]), "instances", r"annotations\[0\].attribute_ids"),
        (_set("annotations", 0, "keypoints", [0, 0, 2]), "keypoints", r"keypoints.json: annotations\[0\].keypoints"),
        (_set("annotations", 0, "id", 77), "keypoints", r"keypoints.json: annotations\[0\].id 77 matches no"),
    ],
)
def test_malformed_json_names_file_and_field(tmp_path, tiny_coco_json, write_tiny_coco, mutate, target, message):
    instances, keypoints = tiny_coco_json
    mutate(instances if target == "instances" else keypoints)
    paths = write_tiny_coco(tmp_path, instances, keypoints)
    with pytest.raises(ValueError, match=message):
        load_coco(paths.instances_json, paths.image_dir, paths.keypoints_json)


def test_invalid_json_syntax_names_file(tmp_path, write_tiny_coco):
    paths = write_tiny_coco(tmp_path)
    paths.instances_json.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"instances.json: not valid JSON"):
        load_coco(paths.instances_json, paths.image_dir)


def test_corrupt_and_missing_images_skipped_with_one_warning(tmp_path, write_tiny_coco):
    paths = write_tiny_coco(tmp_path)
    jpeg = (paths.image_dir / "0001.jpg").read_bytes()
    (paths.image_dir / "0001.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated JPEG
    (paths.image_dir / "0002.png").write_bytes(b"")  # zero bytes
    data = json.loads(paths.instances_json.read_text())
    data["images"].append({"id": 4, "file_name": "absent.jpg", "height": 8, "width": 8})
    paths.instances_json.write_text(json.dumps(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_coco(paths.instances_json, paths.image_dir, paths.keypoints_json)
    skip_warnings = [w for w in caught if "skipped" in str(w.message)]
    assert len(skip_warnings) == 1
    message = str(skip_warnings[0].message)
    assert "skipped 3 of 4 images" in message
    assert "0001.jpg (truncated: no JPEG end-of-image marker)" in message
    assert "0002.png (zero bytes)" in message and "absent.jpg (missing)" in message
    assert [r.image_id for r in dataset.records] == [3]
    assert len(dataset.skipped_images) == 3
    unchecked = load_coco(paths.instances_json, paths.image_dir, paths.keypoints_json, check_images=False)
    assert [r.image_id for r in unchecked.records] == [1, 2, 3, 4]


def test_image_size_mismatch_is_skipped(tmp_path, write_tiny_coco):
    paths = write_tiny_coco(tmp_path)
    data = json.loads(paths.instances_json.read_text())
    data["images"][2]["width"] = 50
    paths.instances_json.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"0003.jpg \(decodes to 32x48, JSON says 32x50\)"):
        dataset = load_coco(paths.instances_json, paths.image_dir)
    assert [r.image_id for r in dataset.records] == [1, 2]


def test_image_record_validates_shapes():
    with pytest.raises(ValueError, match="ImageRecord.boxes_xyxy"):
        ImageRecord(1, "x.jpg", 4, 4, np.zeros((1, 3), np.float32), np.zeros(1, np.int32), np.zeros(1, bool),
                    np.zeros((1, 17, 3), np.float32), ([],), np.zeros((1, 0), np.float32))


def test_load_split_reads_the_synthetic_layout(synth_data):
    train = load_split(synth_data, "train")
    assert len(train) == 8 and train.category_ids == (1, 2, 3, 4)
    assert train.class_names[0] == "person" and len(train.attribute_names) > 0
    persons = [(r, i) for r in train.records for i in np.flatnonzero(r.class_ids == 0)]
    assert persons and all(r.keypoints[i, :, 2].max() > 0 for r, i in persons if not r.is_crowd[i])
    for record in train.records:
        masks = record_masks(record)
        assert masks.shape == (len(record), record.height, record.width)
        assert record.semantic_path is not None and record.depth_path is not None
        for mask, box, crowd in zip(masks, record.boxes_xyxy, record.is_crowd):
            rows, cols = np.nonzero(mask)
            if not crowd:  # instance boxes are the tight extent of their masks
                np.testing.assert_allclose([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], box, atol=1)


def test_degenerate_polygons_are_dropped_not_fatal(tmp_path, tiny_coco_json, write_tiny_coco):
    instances, keypoints = tiny_coco_json
    instances["annotations"][0]["segmentation"].append([1, 2, 3, 4])  # 2 points: not a polygon (COCO has some)
    paths = write_tiny_coco(tmp_path, instances, keypoints)
    record = load_coco(paths.instances_json, paths.image_dir).records[0]
    assert record.segmentations[0] == [[10, 8, 30, 8, 30, 20, 10, 20]]
    assert record_masks(record)[0].sum() == 20 * 12


def test_loader_does_not_import_tensorflow():
    code = "import sys, tfsp.data.coco; print(any(m.split('.')[0] == 'tensorflow' for m in sys.modules))"
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                            cwd=repo)
    assert result.stdout.strip() == "False"
