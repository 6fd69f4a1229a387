"""Frame sources (image, image directory, video file, camera) and annotated-output sinks.

Device-safe: numpy and OpenCV only. Frames are ``(H, W, 3)`` uint8 RGB (OpenCV's BGR is
converted at the boundary, on read and on write).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Files read as images (a directory source reads these, top level only, sorted by name)."""

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
"""Files read as videos."""

VIDEO_FOURCC = "mp4v"
"""Codec of the annotated output videos (MPEG-4 Part 2, playable everywhere, in OpenCV's FFmpeg)."""

VIDEO_OUTPUT_SUFFIX = ".mp4"
"""Container of the annotated output videos."""

DEFAULT_VIDEO_FPS = 30.0
"""Frame rate of an output video when the capture reports none (cameras often report 0)."""

CAMERA_OUTPUT_STEM = "camera"
"""Output video name of camera K: ``camera{K}.mp4``."""


class SourceError(ValueError):
    """A source that cannot be read: missing, unreadable, empty directory, unknown kind."""


class SourceKind(enum.Enum):
    """What ``--source`` names."""

    IMAGE = "image"
    DIRECTORY = "directory"
    VIDEO = "video"
    CAMERA = "camera"


@dataclasses.dataclass(frozen=True)
class Source:
    """A parsed ``--source``.

    Attributes:
        kind: image, directory, video or camera.
        paths: image files (IMAGE: one; DIRECTORY: all, sorted), the video file (VIDEO),
            empty for CAMERA.
        camera_index: OpenCV camera index (CAMERA only, else None).
    """

    kind: SourceKind
    paths: tuple[Path, ...] = ()
    camera_index: int | None = None

    @property
    def is_stream(self) -> bool:
        """Whether frames form a video (annotated output: one video, not image files)."""
        return self.kind in (SourceKind.VIDEO, SourceKind.CAMERA)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One input frame.

    Attributes:
        index: 0-based position in the source (skipped frames included).
        name: file name (images) or ``frame_000012`` (video, camera).
        image_rgb: (H, W, 3) uint8 RGB, or None when the file could not be decoded.
    """

    index: int
    name: str
    image_rgb: np.ndarray | None


def parse_source(text: str) -> Source:
    """Parses ``--source``: a non-negative integer is a camera, else an image, directory or video path.

    Raises:
        SourceError: missing path, directory without images, or a file suffix that is
            neither an image nor a video.
    """
    if text.isdigit():
        return Source(SourceKind.CAMERA, camera_index=int(text))
    path = Path(text)
    if path.is_dir():
        images = tuple(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        if not images:
            raise SourceError(f"source directory {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return Source(SourceKind.DIRECTORY, images)
    if not path.exists():
        raise SourceError(f"source not found: {path} (pass an image, a directory of images, a video, "
                          "or a camera index such as 0)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Source(SourceKind.IMAGE, (path,))
    if suffix in VIDEO_SUFFIXES:
        return Source(SourceKind.VIDEO, (path,))
    raise SourceError(f"source {path}: unknown file type {suffix!r}; images: {', '.join(IMAGE_SUFFIXES)}; "
                      f"videos: {', '.join(VIDEO_SUFFIXES)}")


def read_image_rgb(path: Path) -> np.ndarray | None:
    """Decodes an image file to (H, W, 3) uint8 RGB; None when it is missing or corrupt."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else np.ascontiguousarray(image[..., ::-1])


class FrameReader:
    """Iterates the frames of a source; a context manager that releases the capture.

    Args:
        source: the parsed source.
        max_frames: stop after this many frames (None: all; a camera runs until interrupted).

    Raises:
        SourceError: a single image that cannot be decoded, or a video/camera that does not open.
    """

    def __init__(self, source: Source, max_frames: int | None = None) -> None:
        self._source = source
        self._max_frames = max_frames
        self._capture = None
        if source.kind is SourceKind.IMAGE and read_image_rgb(source.paths[0]) is None:
            raise SourceError(f"cannot decode image {source.paths[0]} (corrupt or not an image)")
        if source.is_stream:
            target = source.camera_index if source.kind is SourceKind.CAMERA else str(source.paths[0])
            self._capture = cv2.VideoCapture(target)
            if not self._capture.isOpened():
                what = f"camera {target}" if source.kind is SourceKind.CAMERA else f"video {target}"
                raise SourceError(f"cannot open {what}")

    @property
    def fps(self) -> float:
        """Frame rate reported by the video or camera (``DEFAULT_VIDEO_FPS`` when unknown or images)."""
        fps = self._capture.get(cv2.CAP_PROP_FPS) if self._capture is not None else 0.0
        return float(fps) if fps and fps > 0 else DEFAULT_VIDEO_FPS

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is None:
            for index, path in enumerate(self._source.paths[: self._max_frames]):
                yield Frame(index, path.name, read_image_rgb(path))
            return
        index = 0
        while self._max_frames is None or index < self._max_frames:
            ok, bgr = self._capture.read()
            if not ok:
                return
            yield Frame(index, f"frame_{index:06d}", np.ascontiguousarray(bgr[..., ::-1]))
            index += 1

    def close(self) -> None:
        """Releases the video capture (no-op for images)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AnnotatedWriter:
    """Writes annotated frames: one image file per input image, or one video per stream.

    Image frames go to ``out_dir/NAME`` (same name and format as the input); a video to
    ``out_dir/STEM.mp4``, a camera to ``out_dir/cameraK.mp4``, at ``fps``.

    Args:
        source: the source the frames come from.
        out_dir: output directory (created).
        fps: frame rate of an output video.

    Raises:
        SourceError: an output path that would overwrite an input file.
    """

    def __init__(self, source: Source, out_dir: Path, fps: float = DEFAULT_VIDEO_FPS) -> None:
        self._source = source
        self._out_dir = Path(out_dir)
        self._fps = fps
        self._video: cv2.VideoWriter | None = None
        self._inputs = {p.resolve() for p in source.paths}
        self.written: list[Path] = []
        """Files written so far (a video appears once, when its first frame is written)."""
        self._out_dir.mkdir(parents=True, exist_ok=True)

    def _target(self, name: str) -> Path:
        path = self._out_dir / name
        if path.resolve() in self._inputs:
            raise SourceError(f"output {path} would overwrite the input; pass another --out directory")
        return path

    def write(self, frame: Frame, image_rgb: np.ndarray) -> None:
        """Writes one annotated (H, W, 3) uint8 RGB frame."""
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])
        if not self._source.is_stream:
            path = self._target(frame.name)
            if not cv2.imwrite(str(path), bgr):
                raise SourceError(f"cannot write {path}")
            self.written.append(path)
            return
        if self._video is None:
            stem = (f"{CAMERA_OUTPUT_STEM}{self._source.camera_index}" if self._source.kind is SourceKind.CAMERA
                    else self._source.paths[0].stem)
            path = self._target(stem + VIDEO_OUTPUT_SUFFIX)
            height, width = bgr.shape[:2]
            self._video = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*VIDEO_FOURCC), self._fps,
                                          (width, height))
            if not self._video.isOpened():
                raise SourceError(f"cannot open video writer for {path} (codec {VIDEO_FOURCC})")
            self.written.append(path)
        self._video.write(bgr)

    def close(self) -> None:
        """Finishes the output video (no-op for images)."""
        if self._video is not None:
            self._video.release()
            self._video = None

    def __enter__(self) -> AnnotatedWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
