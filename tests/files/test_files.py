"""The shared write machinery: atomic files, directory swaps under odd names, and what a failed swap leaves."""
import os

import pytest

from xlstm_metal.files import atomic_write, current_dir, new_dir, publish_dir, recover_dir, writer_lock


@pytest.mark.parametrize("name", ["run", "my.tmp-run", "a.new-1-x", ".hidden"])
def test_a_directory_is_swapped_in_whole_whatever_its_name(tmp_path, name):
    out = tmp_path / name
    for version in ("one", "two"):
        with writer_lock(out):
            recover_dir(out)
            tmp = new_dir(out)
            (tmp / "v.txt").write_text(version)
            publish_dir(tmp, out)
        assert (out / "v.txt").read_text() == version
        assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_failed_move_aside_keeps_the_old_version_and_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "v.txt").write_text("old")
    tmp = new_dir(out)
    (tmp / "v.txt").write_text("new")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        publish_dir(tmp, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and (out / "v.txt").read_text() == "old"


def test_readers_find_the_complete_version_while_out_is_missing(tmp_path):
    out = tmp_path / "run"
    ready = tmp_path / ".run.new-7-abc"
    ready.mkdir()
    assert current_dir(out) == ready
    with writer_lock(out):
        recover_dir(out)
    assert out.is_dir() and current_dir(out) == out and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.json"
    for text in ("1", "2"):
        atomic_write(path, lambda tmp: tmp.write_text(text))
    assert path.read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["f.json"]
