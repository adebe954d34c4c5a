"""Files that survive a failed write: checkpoints are written to a temporary
file in the same folder and moved into place, and read back with an error
that names the file when they cannot be."""
import fcntl
import os
import pickle
import zipfile
from typing import Any

import torch


def atomic_save(obj: Any, path: str) -> None:
    """:func:`torch.save` of :obj:`obj` to :obj:`path` through a temporary
    file in the same folder, flushed to disk and renamed over :obj:`path`:
    a save that fails (a full disk, a kill) leaves the previous file whole."""
    part = f"{path}.part{os.getpid()}"
    try:
        with open(part, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)


def load_checkpoint(path: str, map_location=None) -> Any:
    """:func:`torch.load` with :obj:`weights_only=True`, raising a
    :class:`ValueError` that names :obj:`path` when the file is truncated
    or not a checkpoint."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt: "
                         f"{str(e).splitlines()[0]}); delete it, or restore it from a "
                         "copy") from None


class RunLock:
    """An exclusive lock on a run folder (``folder/.lock``), held while the
    run lives and released by the system if the process dies: a second run
    on the same folder is refused instead of mixing its files with the first.

    Args:
        folder (str): The run folder; created if missing.
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, ".lock")
        self._file = None

    def __enter__(self) -> "RunLock":
        try:
            os.makedirs(self.folder, exist_ok=True)
            self._file = open(self.path, "a+")
        except OSError as e:
            raise ValueError(f"--out {self.folder!r} cannot be written to ({e.strerror}); "
                             "choose a folder this user can write") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise RuntimeError(f"--out {self.folder!r} is in use by another run ({holder}); "
                               "wait for it to end or choose another folder") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}")
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
