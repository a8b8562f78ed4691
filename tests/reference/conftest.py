import pytest

pytest.importorskip("torch", reason="the official reference needs the `reference` extra: pip install -e '.[reference]'")
pytest.importorskip("xlstm.xlstm_large.model", reason="the official reference needs the `reference` extra (xlstm==2.0.6)")
