import platform

import pytest
import torch

from acn_pyg.utils import reuse_freed_memory
from acn_pyg.utils.memory import _glibc


@pytest.mark.skipif(platform.system() != "Linux" or _glibc() is None, reason="needs glibc")
def test_reuse_freed_memory_applies_and_restores():
    try:
        assert reuse_freed_memory() is True
        a = torch.ones(8 * 2 ** 20)  # 64 MB: over glibc's largest mmap threshold
        del a
        b = torch.zeros(8 * 2 ** 20)  # reused heap memory is still handed out zeroed
        assert float(b.abs().sum()) == 0.0
    finally:
        assert reuse_freed_memory(False) is True


def test_reuse_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    import acn_pyg.utils.memory as memory

    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert reuse_freed_memory() is False
