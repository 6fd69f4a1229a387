"""The embedded default data set: a deterministic synthetic COCO-format data set.

Usage::

    python -m tfsp.data.synthetic --out data/synth --train 2000 --val 200 --size 256 --seed 0

Layout written under ``OUT`` (all paths in the JSON files are relative)::

    images/{split}/{image_id:012d}.jpg                  JPEG, quality JPEG_QUALITY
    annotations/instances_{split}.json                  all categories (persons without keypoints)
    annotations/person_keypoints_{split}.json           person annotations only (same ids) with keypoints
    dense/{split}/semantic/{image_id:012d}.png          uint8: 0 background, else topmost category id
    dense/{split}/depth/{image_id:012d}.png             uint16 depth in mm (background DEPTH_BACKGROUND_MM)
    meta.json                                           version, seed, counts, vocabularies

Image and annotation ids are unique across splits: split ``s`` numbers both from
``ID_OFFSETS[s] + 1`` (train 1, 2, ...; val 1_000_001, ...). Every image is drawn from its own
random generator seeded by (seed, split, index), results are collected in index order whatever
the number of worker processes, and JSON is written with sorted keys and no timestamps, so the
same arguments give byte-identical files. Output is written to a temporary
sibling directory and renamed into place at the end.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from tfsp.cli import SuggestingParser, non_negative_int, positive_int
from tfsp.data import synthetic_coco as coco
from tfsp.data import synthetic_scene as scene

GENERATOR_VERSION = "1.1.0"  # 1.1: person face marks and far limbs drawn (pixels only; same scenes)
SPLITS = ("train", "val")
SPLIT_CODES = {"train": 0, "val": 1}  # part of each image's random seed
ID_OFFSETS = {"train": 0, "val": 1_000_000}
JPEG_QUALITY = 95
PNG_COMPRESSION = 3
POOL_MIN_IMAGES = 64  # smaller requests render in-process: starting workers costs more than it saves
POOL_CHUNKSIZE = 16
DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, DEFAULT_IMAGE_SIZE, DEFAULT_SEED = 2000, 200, 256, 0
INFO = {
    "description": "tfsp synthetic shapes and stick-figure people",
    "version": GENERATOR_VERSION,
    "year": 2025,
    "contributor": "tfsp.data.synthetic",
    "url": "",
    "date_created": "",
}


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of image ``index`` (0-based) of ``split``: independent of order."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


def _rel_paths(split: str, image_id: int) -> dict[str, str]:
    name = f"{image_id:012d}"
    return {
        "image": f"images/{split}/{name}.jpg",
        "semantic": f"dense/{split}/semantic/{name}.png",
        "depth": f"dense/{split}/depth/{name}.png",
    }


def _write_image(root: Path, split: str, index: int, seed: int, size: int) -> tuple[dict, list[dict]]:
    """Render image ``index`` of ``split``, write its files under ``root``; return (image entry, annotations)."""
    image_id = ID_OFFSETS[split] + index + 1
    rendered = scene.render_scene(image_rng(seed, split, index), size)
    paths = _rel_paths(split, image_id)
    writes = (
        (paths["image"], cv2.cvtColor(rendered.image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]),
        (paths["semantic"], rendered.semantic, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]),
        (paths["depth"], rendered.depth_mm, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]),
    )
    for rel, array, params in writes:
        ok, encoded = cv2.imencode(Path(rel).suffix, array, params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {rel}")
        (root / rel).write_bytes(encoded.tobytes())
    entry = {
        "id": image_id,
        "file_name": Path(paths["image"]).name,
        "height": size,
        "width": size,
        "dense": {"semantic": paths["semantic"], "depth": paths["depth"]},
    }
    return entry, coco.scene_annotations(rendered, image_id)


def _write_image_task(task: tuple[Path, str, int, int, int]) -> tuple[dict, list[dict]]:
    """Picklable wrapper of :func:`_write_image` for process pools."""
    return _write_image(*task)


def _dump_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, separators=(",", ":")), encoding="utf-8")


def _write_split(root: Path, split: str, count: int, seed: int, size: int, bar: tqdm, pool) -> dict:
    """Write one split's images, dense maps and JSON files; return its counts for meta.json.

    Images are rendered in ``pool`` (a multiprocessing pool, or None for in-process) and
    collected in index order, so the output does not depend on the number of workers.
    """
    for rel in _rel_paths(split, 0).values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    tasks = [(root, split, index, seed, size) for index in range(count)]
    results = map(_write_image_task, tasks) if pool is None else pool.imap(_write_image_task, tasks, POOL_CHUNKSIZE)
    images, annotations = [], []
    for entry, anns in results:
        images.append(entry)
        for ann in anns:
            ann["id"] = ID_OFFSETS[split] + len(annotations) + 1
            annotations.append(ann)
        bar.update(1)
    persons = [ann for ann in annotations if ann["category_id"] == scene.PERSON]
    instances = [{key: value for key, value in ann.items() if key not in ("keypoints", "num_keypoints")}
                 for ann in annotations]
    common = {"info": INFO, "licenses": [], "images": images, "attributes": coco.attributes()}
    (root / "annotations").mkdir(exist_ok=True)
    _dump_json(root / f"annotations/instances_{split}.json",
               {**common, "categories": coco.categories(), "annotations": instances})
    _dump_json(root / f"annotations/person_keypoints_{split}.json",
               {**common, "categories": coco.categories()[:1], "annotations": persons})
    used = {ann["image_id"] for ann in annotations}
    return {
        "num_images": count,
        "num_annotations": len(annotations),
        "num_person_annotations": len(persons),
        "num_crowd_annotations": sum(ann["iscrowd"] for ann in annotations),
        "num_negative_images": sum(entry["id"] not in used for entry in images),
        "first_id": ID_OFFSETS[split] + 1,
    }


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite "
                              "(overwrite=True) to replace it, or choose another --out")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, replacing (after the rename succeeded) whatever was there."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f"{tmp.name}.old")
    os.replace(out, old)
    os.replace(tmp, out)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


def generate_dataset(out_dir: str | Path, num_train: int, num_val: int, image_size: int = DEFAULT_IMAGE_SIZE,
                     seed: int = DEFAULT_SEED, progress: bool = True, overwrite: bool = False,
                     workers: int = 1) -> Path:
    """Generate the synthetic COCO-format data set (layout in the module docstring).

    Args:
        out_dir: output directory; must not exist or be empty unless ``overwrite``.
        num_train: number of training images (< ID_OFFSETS["val"]).
        num_val: number of validation images.
        image_size: side of the square images in pixels.
        seed: random seed; the same arguments give byte-identical files.
        progress: show a tqdm progress bar on stderr.
        overwrite: replace an existing non-empty ``out_dir``.
        workers: worker processes; 1 (or fewer than POOL_MIN_IMAGES images) renders in-process.
            The files are the same for any value. On 2 shared cores a pool was slower than
            in-process rendering (the default 2000 + 200 images take about 20 s of CPU).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
        ValueError: counts or size out of range.
    """
    out = Path(out_dir)
    if not 0 <= num_train < ID_OFFSETS["val"] or num_val < 0 or image_size < 1:
        raise ValueError(f"need 0 <= num_train < {ID_OFFSETS['val']}, num_val >= 0, image_size >= 1; "
                         f"got {num_train}, {num_val}, {image_size}")
    target = out.resolve()  # also handles "." and ".." in out_dir
    _check_out_dir(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
    pool = None
    try:
        if workers > 1 and num_train + num_val >= POOL_MIN_IMAGES:
            pool = multiprocessing.get_context("spawn").Pool(workers)  # spawn: safe after TF import
        counts = {}
        with tqdm(total=num_train + num_val, disable=not progress, desc="synthetic", unit="img") as bar:
            for split, count in zip(SPLITS, (num_train, num_val)):
                counts[split] = _write_split(tmp, split, count, seed, image_size, bar, pool)
        meta = {
            "generator": "tfsp.data.synthetic",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "image_size": image_size,
            "splits": counts,
            "categories": coco.categories(),
            "attributes": coco.attributes(),
            "depth_background_mm": scene.DEPTH_BACKGROUND_MM,
            "jpeg_quality": JPEG_QUALITY,
        }
        _dump_json(tmp / "meta.json", meta)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        _check_out_dir(target, overwrite)
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()  # every result has been consumed (or an error is on its way)
            pool.join()
    return out


NOT_GENERATED = "no data set of this generator there"


def stale_reason(out_dir: str | Path, num_train: int, num_val: int, image_size: int, seed: int) -> str | None:
    """Why ``out_dir`` does not hold the data set these settings generate, or None when it does.

    Returns:
        None: its meta.json names this generator version, seed, size and counts;
        :data:`NOT_GENERATED`: it has no readable meta.json of this generator (another data set
        or none: never replaced silently); otherwise what differs, e.g. ``"version 1.0.0, now 1.1.0"``.
    """
    try:
        meta = json.loads((Path(out_dir) / "meta.json").read_text())
    except (OSError, ValueError):
        return NOT_GENERATED
    if not isinstance(meta, dict) or meta.get("generator") != "tfsp.data.synthetic":
        return NOT_GENERATED
    counts = meta.get("splits") or {}
    wanted = {"version": GENERATOR_VERSION, "seed": seed, "image_size": image_size,
              "train images": num_train, "val images": num_val}
    found = {"version": meta.get("version"), "seed": meta.get("seed"), "image_size": meta.get("image_size"),
             "train images": (counts.get("train") or {}).get("num_images"),
             "val images": (counts.get("val") or {}).get("num_images")}
    differ = [f"{key} {found[key]}, now {value}" for key, value in wanted.items() if found[key] != value]
    return "; ".join(differ) or None


def _parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="python -m tfsp.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory (must be empty or absent)")
    parser.add_argument("--train", type=non_negative_int, default=DEFAULT_NUM_TRAIN, help="number of training images")
    parser.add_argument("--val", type=non_negative_int, default=DEFAULT_NUM_VAL, help="number of validation images")
    parser.add_argument("--size", type=positive_int, default=DEFAULT_IMAGE_SIZE, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="worker processes; any value gives the same files")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--if-stale", action="store_true",
                        help="keep --out when it holds this generator version's data set with these settings; "
                             "replace it when it holds an older one (another version, seed, size or count)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    overwrite = args.overwrite
    if args.if_stale:
        stale = stale_reason(args.out, args.train, args.val, args.size, args.seed)
        if stale is None:
            print(f"{args.out} is up to date (generator {GENERATOR_VERSION}, seed {args.seed})")
            return 0
        if stale != NOT_GENERATED:
            print(f"regenerating {args.out}: {stale}")
            overwrite = True
    try:
        out = generate_dataset(args.out, args.train, args.val, args.size, args.seed,
                               progress=not args.no_progress, overwrite=overwrite, workers=args.workers)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    print(f"next: python -m tfsp.data.preview --data {out} --split val --out outputs/synth_contact_sheet.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
