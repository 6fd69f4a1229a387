"""The generated synthetic data set, read back only through pycocotools (the path a COCO user takes)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from tfsp.data import synthetic
from tfsp.data.keypoints import KEYPOINT_NAMES, skeleton_one_based
from tfsp.data.synthetic_coco import ATTRIBUTE_IDS, MEDIUM_AREA_PX, SMALL_AREA_PX
from tfsp.data.synthetic_scene import DEPTH_BACKGROUND_MM, PALETTE

NUM_TRAIN, NUM_VAL, SIZE = 24, 4, 96  # 28 images: a crowd region appears with probability > 0.99


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate_dataset(tmp_path_factory.mktemp("synthetic") / "synth", NUM_TRAIN, NUM_VAL,
                                      image_size=SIZE, seed=0, progress=False)


def _coco(root: Path, kind: str, split: str) -> COCO:
    return COCO(str(root / "annotations" / f"{kind}_{split}.json"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_layout_ids_and_counts(root: Path, split: str):
    coco = _coco(root, "instances", split)
    count = {"train": NUM_TRAIN, "val": NUM_VAL}[split]
    first = synthetic.ID_OFFSETS[split] + 1
    assert sorted(coco.getImgIds()) == list(range(first, first + count))
    assert sorted(coco.getAnnIds()) == list(range(first, first + len(coco.getAnnIds())))
    for image in coco.dataset["images"]:
        assert image["file_name"] == f"{image['id']:012d}.jpg"
        bgr = cv2.imread(str(root / "images" / split / image["file_name"]))
        assert bgr.shape == (SIZE, SIZE, 3) == (image["height"], image["width"], 3)
        assert image["dense"] == {"semantic": f"dense/{split}/semantic/{image['id']:012d}.png",
                                  "depth": f"dense/{split}/depth/{image['id']:012d}.png"}
    meta = json.loads((root / "meta.json").read_text())["splits"][split]
    anns = coco.dataset["annotations"]
    assert meta["num_images"] == count and meta["num_annotations"] == len(anns)
    assert meta["num_crowd_annotations"] == sum(a["iscrowd"] for a in anns)
    assert meta["num_person_annotations"] == len(coco.getAnnIds(catIds=[1]))
    assert meta["num_negative_images"] == count - len({a["image_id"] for a in anns})


def test_categories_attributes_and_crowds(root: Path):
    coco = _coco(root, "instances", "train")
    cats = coco.loadCats(coco.getCatIds())
    assert [(c["id"], c["name"]) for c in cats] == [(1, "person"), (2, "circle"), (3, "square"), (4, "triangle")]
    assert cats[0]["keypoints"] == list(KEYPOINT_NAMES) and cats[0]["skeleton"] == skeleton_one_based()
    vocab = {a["id"]: a["name"] for a in coco.dataset["attributes"]}
    assert vocab == {i: n for n, i in ATTRIBUTE_IDS.items()}
    for ann in coco.dataset["annotations"]:
        names = [vocab[i] for i in ann["attribute_ids"]]
        size = "small" if ann["area"] < SMALL_AREA_PX else "medium" if ann["area"] < MEDIUM_AREA_PX else "large"
        assert len(names) == 3 and names[0] in PALETTE and names[1] in ("filled", "outlined") and names[2] == size
        assert "keypoints" not in ann  # keypoints live in person_keypoints_*.json
    crowds = [a for a in coco.dataset["annotations"] if a["iscrowd"]]
    assert crowds, "expected at least one crowd region in the fixture set"
    assert all(isinstance(a["segmentation"]["counts"], str) and a["category_id"] != 1 for a in crowds)


@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_masks_boxes_areas_and_dense_maps(root: Path, split: str):
    """Every mask decodes with annToMask; boxes/areas/semantic/depth agree with it exactly.

    Polygons trace pixel edges (not pixel centres), so pycocotools rasterises them back to the
    exact visible mask: bbox and area match the decoded mask with no tolerance.
    """
    coco = _coco(root, "instances", split)
    for image in coco.dataset["images"]:
        semantic = cv2.imread(str(root / image["dense"]["semantic"]), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(root / image["dense"]["depth"]), cv2.IMREAD_UNCHANGED)
        assert semantic.dtype == np.uint8 and depth.dtype == np.uint16 and semantic.shape == (SIZE, SIZE)
        union = np.zeros((SIZE, SIZE), bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            mask = coco.annToMask(ann).astype(bool)
            assert isinstance(ann["segmentation"], dict) == bool(ann["iscrowd"])
            assert ann["area"] == mask.sum() >= synthetic.scene.MIN_VISIBLE_AREA_PX
            rows, cols = np.nonzero(mask)
            x0, y0, x1, y1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
            assert not (union & mask).any(), "visible masks of one image must be disjoint"
            union |= mask
            assert (semantic[mask] == ann["category_id"]).all()
            assert (depth[mask] < DEPTH_BACKGROUND_MM).all()
        np.testing.assert_array_equal(semantic > 0, union)
        assert (depth[~union] == DEPTH_BACKGROUND_MM).all()


def test_person_keypoints_agree_with_masks(root: Path):
    """v=2 keypoints lie on the person's visible mask, v=1 under another object, v=0 at (0, 0)."""
    counts = np.zeros(3, int)
    for split in synthetic.SPLITS:
        instances, people = _coco(root, "instances", split), _coco(root, "person_keypoints", split)
        assert [c["id"] for c in people.dataset["categories"]] == [1]
        assert sorted(people.getAnnIds()) == sorted(instances.getAnnIds(catIds=[1]))
        for ann in people.dataset["annotations"]:
            keypoints = np.array(ann["keypoints"], np.float64).reshape(17, 3)
            assert ann["num_keypoints"] == np.count_nonzero(keypoints[:, 2])
            own = people.annToMask(ann).astype(bool)
            others = np.zeros_like(own)
            for other in instances.loadAnns(instances.getAnnIds(imgIds=[ann["image_id"]])):
                if other["id"] != ann["id"]:
                    others |= instances.annToMask(other).astype(bool)
            for x, y, v in keypoints:
                counts[int(v)] += 1
                if v == 0:
                    assert x == y == 0.0
                    continue
                assert 0 <= x < SIZE and 0 <= y < SIZE
                pixel = int(y), int(x)  # the pixel containing the continuous point (x, y)
                assert own[pixel] if v == 2 else (others[pixel] and not own[pixel])
    assert (counts > 0).all(), f"fixture set should hold every visibility, got counts {counts}"


def test_same_seed_same_bytes_and_splits_independent(tmp_path: Path):
    first = _files(synthetic.generate_dataset(tmp_path / "a", 4, 2, image_size=64, seed=3, progress=False))
    second = _files(synthetic.generate_dataset(tmp_path / "b", 4, 2, image_size=64, seed=3, progress=False))
    assert first.keys() == second.keys() and len(first) == 3 * 6 + 4 + 1
    assert all(first[k] == second[k] for k in first)
    fewer_train = _files(synthetic.generate_dataset(tmp_path / "c", 2, 2, image_size=64, seed=3, progress=False))
    val = [k for k in first if "val" in k]
    assert val and all(first[k] == fewer_train[k] for k in val)  # val does not depend on --train
    other_seed = _files(synthetic.generate_dataset(tmp_path / "d", 4, 2, image_size=64, seed=4, progress=False))
    assert first["annotations/instances_train.json"] != other_seed["annotations/instances_train.json"]


@pytest.mark.slow
def test_worker_processes_give_the_same_bytes(tmp_path: Path):
    count = synthetic.POOL_MIN_IMAGES  # the smallest request that uses the pool
    pooled = synthetic.generate_dataset(tmp_path / "pool", count - 1, 1, image_size=32, progress=False, workers=2)
    serial = synthetic.generate_dataset(tmp_path / "serial", count - 1, 1, image_size=32, progress=False, workers=1)
    assert _files(pooled) == _files(serial)


def test_refuses_to_overwrite_and_writes_atomically(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        synthetic.generate_dataset(out, 1, 1, image_size=32, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    synthetic.generate_dataset(out, 1, 1, image_size=32, progress=False, overwrite=True)
    assert (out / "meta.json").is_file() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directories left


def test_cli_writes_and_suggests_close_options(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "cli"
    assert synthetic.main(["--out", str(out), "--train", "1", "--val", "1", "--size", "32", "--no-progress"]) == 0
    assert json.loads((out / "meta.json").read_text())["splits"]["val"]["first_id"] == 1_000_001
    next_line = capsys.readouterr().out.splitlines()[-1]
    assert next_line == (f"next: python -m tfsp.data.preview --data {out} --split val "
                         "--out outputs/synth_contact_sheet.png")
    assert synthetic.main(["--out", str(out), "--train", "1", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(out), "--trian", "1"])
    assert "did you mean --train" in capsys.readouterr().err


def test_if_stale_keeps_a_current_data_set_and_replaces_an_older_one_but_never_other_data(
        tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "synth"
    args = ["--out", str(out), "--train", "1", "--val", "1", "--size", "32", "--no-progress", "--if-stale"]
    assert synthetic.main(args) == 0
    meta_path = out / "meta.json"
    first = meta_path.stat().st_mtime_ns
    assert synthetic.main(args) == 0 and meta_path.stat().st_mtime_ns == first
    assert "is up to date" in capsys.readouterr().out
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": "0.9.0"}))
    assert synthetic.stale_reason(out, 1, 1, 32, synthetic.DEFAULT_SEED) == f"version 0.9.0, now {synthetic.GENERATOR_VERSION}"
    assert synthetic.stale_reason(out, 1, 2, 32, synthetic.DEFAULT_SEED).endswith("val images 1, now 2")
    assert synthetic.main(args) == 0
    assert "regenerating" in capsys.readouterr().out
    assert json.loads(meta_path.read_text())["version"] == synthetic.GENERATOR_VERSION
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert synthetic.stale_reason(other, 1, 1, 32, 0) == synthetic.NOT_GENERATED
    assert synthetic.main(["--out", str(other), *args[2:]]) == 2  # not ours: refused, kept
    assert (other / "keep.txt").read_text() == "mine"
