"""check_writable: an output folder is checked before any work, and nothing is created."""

import pytest

from nvs_ros.io.errors import OutputFolderError
from nvs_ros.io.output_folder import check_writable


def test_a_folder_to_be_created_passes_and_is_not_created(tmp_path) -> None:
    check_writable(tmp_path)
    check_writable(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_a_file_on_the_way_is_named(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(OutputFolderError, match="notes.txt is not a folder"):
        check_writable(tmp_path / "notes.txt" / "out")
    with pytest.raises(OutputFolderError, match="notes.txt is not a folder"):
        check_writable(tmp_path / "notes.txt")
