r"""Keeping freed memory for reuse on CPU (glibc).

glibc's :obj:`malloc` serves every block larger than its mmap threshold (at
most 32 MB) with a fresh :obj:`mmap` and unmaps it on :obj:`free`, so each
large tensor of a step is page-faulted and zeroed by the kernel again on the
next step. The per-edge tensors of a large system are hundreds of MB, and this
cost grows faster than the tensors, so a step's time is no longer linear in
the number of edges (``benchmarks/scaling.py`` measures both settings).
:func:`reuse_freed_memory` keeps freed memory in the heap instead, for the
whole process.
"""
import ctypes
import ctypes.util
import platform

#: glibc's mallopt parameters and defaults.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def _glibc():
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


def reuse_freed_memory(enable: bool = True) -> bool:
    r"""Makes glibc keep freed memory in the process heap for reuse instead of
    giving large blocks back to the kernel (:obj:`mallopt(M_MMAP_MAX, 0)`,
    :obj:`mallopt(M_TRIM_THRESHOLD, -1)`; the same as the environment
    variables :obj:`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=-1`). For large
    systems on CPU (tens of thousands of atoms and more) this makes each step
    faster and its time linear in the number of edges.
    The cost: the process keeps its peak heap size until it exits (or until
    :obj:`malloc_trim` is called), which a training or simulation process
    reaches on every step anyway.

    Args:
        enable (bool, optional): :obj:`False` restores glibc's defaults.
            (default: :obj:`True`)

    Returns:
        :obj:`True` if the setting was applied, :obj:`False` where the C
        library is not glibc (macOS, Windows, musl), where nothing is changed.
    """
    libc = _glibc()
    if libc is None:
        return False
    if enable:
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, -1)
    else:
        ok = (libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
              and libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD))
    return bool(ok)
