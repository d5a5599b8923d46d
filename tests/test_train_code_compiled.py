"""A train folder with compiled code the admin cannot review is refused before any import.

Attack (security review, HIGH): a harmless ``train.py`` beside a ``__pycache__`` .pyc built
from other code; the normal loader would run the .pyc, the admin reviewed the source.
"""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from trains.runtime.core import TrainCodeError, load_train_module

HARMLESS = "def local(data, state, ctx):\n    return {'ran': 'source'}\n"
OTHER = (
    "import sys\nsys.modules['pht_pyc_ran'] = True\n"
    "def local(data, state, ctx):\n    return {'ran': 'pyc'}\n"
)


def _train(tmp_path: Path) -> Path:
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "train.py").write_text(HARMLESS)
    return folder


def test_shipped_pycache_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    folder = _train(tmp_path)
    other = tmp_path / "other.py"
    other.write_text(OTHER)
    cache = folder / "__pycache__"
    cache.mkdir()
    py_compile.compile(
        str(other),
        cfile=str(cache / "train.cpython-311.pyc"),
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    with pytest.raises(TrainCodeError, match="__pycache__"):
        load_train_module(folder)
    import sys

    assert "pht_pyc_ran" not in sys.modules


@pytest.mark.parametrize(
    "name", ["helper.pyc", "lib/x.pyo", "fast.cpython-311-x86_64-linux-gnu.so", "w.pyd"]
)
def test_compiled_or_binary_module_is_refused(tmp_path: Path, name: str) -> None:
    folder = _train(tmp_path)
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x00binary")
    with pytest.raises(TrainCodeError, match="cannot review"):
        load_train_module(folder)


def test_source_only_train_loads(tmp_path: Path) -> None:
    module = load_train_module(_train(tmp_path))
    assert module.local(None, None, None) == {"ran": "source"}
