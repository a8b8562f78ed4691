"""MAD data in mad-lab's benchmark layout: ``<setting dir>/{train,test}/{inputs,targets}.npy`` round-trips, a
directory that is there (the published data) is read instead of generated, and bad files are refused in one
line naming the file."""
from dataclasses import replace

import numpy as np
import pytest

from xlstm_metal.mad import BASELINES, IGNORE, MadDataError, Split, read_split, setting_data, write_split

SMALL = replace(BASELINES["in_context_recall"], seq_len=32, num_train_examples=40, num_test_examples=12)


def test_the_layout_round_trips(tmp_path):
    train, test = setting_data(SMALL, tmp_path)
    d = tmp_path / SMALL.dir_name()
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*.npy")) == [
        "test/inputs.npy", "test/targets.npy", "train/inputs.npy", "train/targets.npy"]
    assert np.array_equal(np.load(d / "train" / "inputs.npy"), train.inputs)
    again_train, again_test = setting_data(SMALL, tmp_path)
    assert np.array_equal(again_test.targets, test.targets) and np.array_equal(again_train.inputs, train.inputs)
    assert not list(tmp_path.glob(".*")), "no temporaries left behind"


def test_present_data_is_read_not_regenerated(tmp_path):
    train, test = setting_data(SMALL, None)
    mine = Split(np.zeros_like(train.inputs), train.targets)
    write_split(mine, tmp_path / SMALL.dir_name() / "train")
    write_split(test, tmp_path / SMALL.dir_name() / "test")
    assert (setting_data(SMALL, tmp_path)[0].inputs == 0).all()


def test_train_and_test_are_independent_draws_with_their_own_scoring():
    train, test = setting_data(SMALL, None)
    assert not {tuple(r) for r in test.inputs} & {tuple(r) for r in train.inputs}
    assert (train.targets != IGNORE).mean() > 0.9 > 0.5 > (test.targets != IGNORE).mean()


@pytest.mark.parametrize("damage, message", [
    (lambda x, y: (x + 100, y), "outside the setting's vocabulary"),
    (lambda x, y: (x, np.where(np.arange(y.size).reshape(y.shape) == 0, -1, y)), "target -1"),
    (lambda x, y: (x[:, :-1], y), "differ in shape"),
    (lambda x, y: (x[:5], y[:5]), "examples"),
    (lambda x, y: (x.astype(np.float32), y), "integer array"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path, damage, message):
    train, _ = setting_data(SMALL, None)
    x, y = damage(train.inputs, train.targets)
    tmp_path.joinpath("train").mkdir()
    np.save(tmp_path / "train" / "inputs.npy", x)
    np.save(tmp_path / "train" / "targets.npy", y)
    with pytest.raises(MadDataError, match=message) as err:
        read_split(tmp_path / "train", SMALL.vocab_size, SMALL.num_train_examples)
    assert str(tmp_path / "train") in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    (tmp_path / "test").mkdir()
    with pytest.raises(MadDataError, match="targets.npy: missing|inputs.npy: missing"):
        read_split(tmp_path / "test", 16)
