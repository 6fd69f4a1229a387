"""tfsp.fileio: atomic writes leave whole files with normal permissions and no temporary files."""

import os
import stat

import pytest

from tfsp.fileio import default_file_mode, replacing, write_atomic, write_text_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "model.tflite"
    assert write_atomic(target, b"old") == target
    write_atomic(str(target), b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert [p.name for p in target.parent.iterdir()] == ["model.tflite"]  # no temp files left


def test_text_is_utf8(tmp_path):
    path = write_text_atomic(tmp_path / "x.json", "größe: 3 µm\n")
    assert path.read_bytes() == "größe: 3 µm\n".encode("utf-8")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_permissions_follow_the_umask_not_mkstemp(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "m.tflite", b"x")
        plain = tmp_path / "plain"
        plain.write_bytes(b"x")  # what an ordinary open(path, "wb") gives
        assert default_file_mode() == mode
        assert os.umask(umask) == umask  # reading the umask did not change it
    finally:
        os.umask(old)
    assert _mode(path) == _mode(plain) == mode


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, umask_022):
    target = write_atomic(tmp_path / "state.json", b"old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with replacing(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_replacing_gives_a_temp_path_with_the_target_suffix(tmp_path, umask_022):
    target = tmp_path / "last.keras"
    with replacing(target) as temp:
        assert temp.parent == tmp_path and temp.suffix == ".keras" and temp.is_file() and not target.exists()
        temp.write_bytes(b"zip")
    assert target.read_bytes() == b"zip" and _mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["last.keras"]
