"""python -m tfsp.data.preview: the contact sheet of a data set, written atomically."""

import os
import stat

import cv2
import pytest

from tfsp.data import preview


def test_cli_writes_a_contact_sheet_with_normal_permissions(synth_data, tmp_path, capsys):
    out = tmp_path / "sheets" / "sheet.png"
    old = os.umask(0o022)
    try:
        assert preview.main(["--data", str(synth_data), "--split", "val", "--out", str(out), "--count", "2",
                             "--columns", "2"]) == 0
    finally:
        os.umask(old)
    sheet = cv2.imread(str(out), cv2.IMREAD_COLOR)
    # 2 tiles of 256 px, each twice as wide (image + semantic map) and side by side.
    assert sheet.shape[0] == preview.DEFAULT_TILE_PX and sheet.shape[1] == 4 * preview.DEFAULT_TILE_PX
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["sheet.png"]  # no temp files left
    assert f"contact sheet of 2 val images: {out}" in capsys.readouterr().out


def test_cli_suggests_close_options(synth_data, capsys):
    with pytest.raises(SystemExit):
        preview.main(["--data", str(synth_data), "--coutn", "2"])
    assert "--coutn (did you mean --count?)" in capsys.readouterr().err
