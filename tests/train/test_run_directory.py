"""``Trainer``'s output directory: it resumes only its own run, never replaces what it did not write, survives a
kill in the middle of a checkpoint swap, and admits one writer at a time."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xlstm_metal import xLSTMRunner
from xlstm_metal.errors import InputError
from xlstm_metal.files import LockedError, writer_lock
from xlstm_metal.train import TokenBatches, TrainConfig, Trainer

from test_training import DATA, SPEC

OTHER_SPEC = dict(SPEC, name="other-spec", dims={"d": 48, "vocab": 40})


def trainer(out, steps=4, spec=SPEC, **kw):
    runner = xLSTMRunner.from_spec(spec, seed=0)
    cfg = TrainConfig(steps=steps, batch_size=2, seq_len=8, lr=1e-2, warmup=1, save_every=2, log_every=2,
                      eval_every=100, compile=False)
    return Trainer(runner, TokenBatches(DATA, 2, 8, seed=1), cfg, out, progress=False, **kw)


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_a_directory_of_user_files_is_refused_and_left_as_it_was(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    before = tree(tmp_path)
    with pytest.raises(InputError, match="is not empty and holds no training run .* --overwrite"):
        trainer(out).train()
    assert tree(tmp_path) == before


def test_overwrite_replaces_a_directory_that_is_no_run(tmp_path):
    out = tmp_path / "scratch"
    out.mkdir()
    (out / "old.txt").write_text("x")
    trainer(out, overwrite=True).train()
    assert (out / "trainer.json").exists() and not (out / "old.txt").exists()


def test_a_run_of_another_architecture_is_refused_naming_both(tmp_path):
    trainer(tmp_path / "run", spec=OTHER_SPEC).train()
    before = tree(tmp_path)
    with pytest.raises(InputError) as info:
        trainer(tmp_path / "run").train()
    msg = str(info.value)
    assert "'other-spec'" in msg and "'train-test'" in msg and "--overwrite" in msg and "\n" not in msg
    with pytest.raises(InputError):  # --no-resume does not make it ours either
        trainer(tmp_path / "run").train(resume=False)
    assert tree(tmp_path) == before
    xLSTMRunner.from_pretrained(tmp_path / "run")  # the other run's checkpoint still loads


def test_same_name_but_other_dimensions_is_another_architecture(tmp_path):
    trainer(tmp_path / "run", spec=dict(SPEC, dims={"d": 48, "vocab": 40})).train()
    with pytest.raises(InputError, match="architecture [0-9a-f]{16}.*architecture [0-9a-f]{16}"):
        trainer(tmp_path / "run").train()


def test_overwrite_replaces_a_run_of_another_architecture(tmp_path):
    trainer(tmp_path / "run", spec=OTHER_SPEC).train()
    t = trainer(tmp_path / "run", overwrite=True)
    t.train()
    assert xLSTMRunner.from_pretrained(tmp_path / "run").graph.name == "train-test"


KILL_BETWEEN_RENAMES = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    import xlstm_metal.files as files
    from test_run_directory import trainer
    real_rename, saves = os.rename, []
    def rename(src, dst):
        if ".new-" in str(src) and Path(dst).name == "run":  # the new version about to take the old one's place
            saves.append(src)
            if len(saves) == 2:
                os._exit(9)  # killed: the old version is already moved aside, the new one not yet in place
        return real_rename(src, dst)
    files.os.rename = rename
    trainer(Path({out!r}), steps=6).train()
""")


def test_a_kill_between_the_renames_leaves_a_checkpoint_and_the_next_run_resumes(tmp_path):
    out = tmp_path / "run"
    script = KILL_BETWEEN_RENAMES.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr
    assert not out.exists()  # the crash hit between the two renames
    left = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert left == [".run.lock", ".run.new", ".run.old"]  # the dead writer's lock binds no one
    xLSTMRunner.from_pretrained(out)  # a reader finds the complete version
    again = trainer(out, steps=6)
    assert again.try_resume() and again.step == 4  # the newest complete checkpoint
    again.train()
    assert again.step == 6 and sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # leftovers cleaned


def test_stale_leftovers_of_ours_are_removed_and_never_block_a_save(tmp_path):
    out = tmp_path / "run"
    trainer(out, steps=2).train()
    for name in (".run.tmp-99999-abc", ".run.old-99999-def"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / ".run.old-12345").mkdir()  # as earlier versions named it: a checkpoint's files only
    (tmp_path / ".run.old-12345" / "config.json").write_text("{}")
    (tmp_path / ".run.old-notours").mkdir()  # a name we never write: not ours to delete
    (tmp_path / ".run.old-2023").mkdir()  # an old-style name holding what no checkpoint holds
    (tmp_path / ".run.old-2023" / "photo.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / ".run.tmp-1-x.txt").write_text("a file, not a directory of ours")
    trainer(out, steps=4).train()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.old-2023", ".run.old-notours", ".run.tmp-1-x.txt",
                                                          "run"]
    assert json.loads((out / "trainer.json").read_text())["step"] == 4


def test_two_trainers_on_one_out_cannot_both_write(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from xlstm_metal.files import writer_lock
        with writer_lock(Path({str(out)!r})):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError) as info:
            trainer(out).train()
        msg = str(info.value)
        assert f"pid {holder.pid}" in msg and str(out) in msg and "\n" not in msg
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    trainer(out, steps=2).train()  # the lock died with its holder
    assert not list(tmp_path.glob(".run.lock"))


def test_the_lock_is_reentrant_within_one_process_and_released(tmp_path):
    with writer_lock(tmp_path / "d"):
        with writer_lock(tmp_path / "d"):
            assert (tmp_path / ".d.lock").read_text() == str(__import__("os").getpid())
    assert not (tmp_path / ".d.lock").exists()
    with writer_lock(tmp_path / "d"):
        pass


@pytest.mark.parametrize("damage, fragment", [
    (lambda out: (out / "trainer.json").write_text('{"step": "four"}'), "trainer.json is damaged"),
    (lambda out: (out / "trainer.json").write_bytes(b"\xff\xfe"), "trainer.json is not UTF-8"),
    (lambda out: (out / "trainer_state.safetensors").write_bytes(b"\x00" * 5), "trainer_state.safetensors is truncated"),
    (lambda out: (out / "trainer_state.safetensors").unlink(), "trainer_state.safetensors is missing"),
])
def test_a_damaged_run_is_one_line_naming_the_file(tmp_path, damage, fragment):
    trainer(tmp_path / "run", steps=2).train()
    damage(tmp_path / "run")
    with pytest.raises(InputError, match=fragment) as info:
        trainer(tmp_path / "run").train()
    assert "\n" not in str(info.value)


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(InputError, match="is a file, not a directory"):
        trainer(tmp_path / "run").train()
    assert (tmp_path / "run").read_text() == "not a directory"
