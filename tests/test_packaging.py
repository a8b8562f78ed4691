"""A normal (non-editable) install carries every package and data file the library needs.

The build runs setuptools' own ``build_py`` and ``egg_info`` steps (what a wheel is made of), so it needs neither
the ``wheel`` package nor a download."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# source folder -> the package name it installs as
INSTALLED_AS = {"xlstm_metal": "xlstm_metal", "blocks": "xlstm_metal/blocks", "kernels": "xlstm_metal/kernels"}


def build(tmp_path):
    res = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                          "egg_info", "--egg-base", str(tmp_path), "build_py", "--build-lib", str(tmp_path / "lib")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return tmp_path / "lib", next(tmp_path.glob("*.egg-info"))


def test_the_install_contains_every_package_the_specs_and_the_default_model(tmp_path):
    lib, info = build(tmp_path)
    for folder, installed in INSTALLED_AS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            module = init.relative_to(ROOT / folder)
            assert (lib / installed / module).is_file(), f"{folder}/{module} is not installed"
    for required in ("xlstm_metal/blocks/mlstm.py", "xlstm_metal/kernels/mlstm/native.py",
                     "xlstm_metal/wiring_specs/xlstm_7b.yaml", "xlstm_metal/default_model/model.safetensors",
                     "xlstm_metal/default_model/tokenizer.json", "xlstm_metal/testing/strategies.py",
                     "xlstm_metal/cli/__init__.py"):
        assert (lib / required).is_file(), required
    assert not (lib / "blocks").exists() and not (lib / "kernels").exists()  # no generic top-level import names
    assert "xlstm-metal = xlstm_metal.cli:main" in (info / "entry_points.txt").read_text()
