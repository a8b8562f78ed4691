"""A normal (non-editable) install carries every package and data file the library needs."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_contains_blocks_kernels_specs_and_the_default_model(tmp_path):
    pytest.importorskip("setuptools")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                          str(ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("xlstm_metal-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("xlstm_metal/blocks/mlstm.py", "xlstm_metal/kernels/mlstm/native.py", "xlstm_metal/kernels/mlstm/fused_step.py",
                     "xlstm_metal/wiring_specs/xlstm_7b.yaml", "xlstm_metal/default_model/model.safetensors",
                     "xlstm_metal/default_model/tokenizer.json", "xlstm_metal/testing/strategies.py", "xlstm_metal/cli.py"):
        assert required in names, required
    assert not any(n.startswith(("blocks/", "kernels/")) for n in names)  # no generic top-level import names
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "xlstm-metal = xlstm_metal.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()
