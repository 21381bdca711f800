"""The report folder: refused when it would overwrite something, written atomically."""

from __future__ import annotations

import pytest

from napari_segclr.evaluate import check_output_dir
from napari_segclr.exceptions import OutputExistsError


def test_a_new_or_empty_folder_is_accepted_and_not_created_early(tmp_path):
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty") == tmp_path / "empty"


def test_a_file_or_a_non_empty_folder_is_refused_in_one_line(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force") as info:
        check_output_dir(tmp_path / "full")
    assert "\n" not in str(info.value)
    assert check_output_dir(tmp_path / "full", force=True) == tmp_path / "full"
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputExistsError, match="not a folder"):
        check_output_dir(tmp_path / "file", force=True)
