"""An on-disk store of structures read lazily through memory maps: one flat
binary file per attribute (the rows of every structure, concatenated) and
one of offsets, as PyG's collated :obj:`data` and :obj:`slices` hold them
in memory.

Why memory maps, and not LMDB or HDF5: a structure is two slices per
attribute of files the operating system pages in on demand, with no
per-record decoding (LMDB stores pickled records) and no library state to
reopen in every DataLoader worker (HDF5 handles do not survive a fork); the
pages are shared by the workers and by the ranks of one node through the
page cache, and nothing beyond NumPy is needed.

Layout of a store folder (written to ``FOLDER.part``, then renamed):

* ``KEY.bin``: the rows of attribute ``KEY``, shape ``[rows, *shape]``;
* ``KEY.slices``: int64 offsets ``[num + 1]``: structure ``i`` holds rows
  ``offsets[i]:offsets[i + 1]``;
* ``meta.json``: the number of structures, each attribute's dtype, shape
  and SHA-256 of its two files, and the record of what the store was built
  from.
"""
import hashlib
import json
import os
import shutil
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from acn_pyg.datasets.cache import record_problem

#: Bump when the layout changes; stores of another version are rebuilt.
FORMAT = 1
_FLUSH_BYTES, _FLUSH_STRUCTURES = 4 << 20, 4096


class DiskWriter:
    """Streams structures (:class:`~torch_geometric.data.Data` of tensors
    concatenated along their first dimension: per-atom and per-structure
    attributes) to a store folder; memory stays that of a write buffer
    whatever the number of structures.

    Args:
        folder (str): The store folder, replaced when :meth:`finish` is
            called.
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.part = f"{folder}.part"
        shutil.rmtree(self.part, ignore_errors=True)
        os.makedirs(self.part)
        self.num = 0
        self.keys: Dict[str, dict] = {}

    def append(self, data, where: str = "") -> None:
        """Adds one structure; :obj:`where` names it in errors."""
        if self.num == 0:
            for key, value in data.items():
                self._open(key, value, where)
        keys = set(k for k, _ in data.items())
        if keys != set(self.keys):
            raise ValueError(f"{where} has the attributes {sorted(keys)}, the first structure "
                             f"{sorted(self.keys)}: every structure must have the same")
        for key, value in data.items():
            if data.__cat_dim__(key, value) != 0 or data.__inc__(key, value) != 0:
                raise ValueError(f"{where}: attribute '{key}' is not concatenated along its "
                                 "first dimension (an index such as edge_index): an on-disk "
                                 "store holds per-atom and per-structure values; the model "
                                 "builds its graph on the fly")
            self._add(key, value, where)
        self.num += 1

    def _open(self, key: str, value, where: str) -> None:
        if not isinstance(value, Tensor) or value.dim() == 0:
            raise ValueError(f"{where}: attribute '{key}' is not a tensor with a first "
                             "dimension; an on-disk store holds tensors only")
        self.keys[key] = dict(
            dtype=str(value.numpy().dtype), shape=list(value.shape[1:]),
            rows=0, buffer=[], buffered=0, offsets=[0],
            bin=open(os.path.join(self.part, f"{key}.bin"), "wb"),
            slices=open(os.path.join(self.part, f"{key}.slices"), "wb"))

    def _add(self, key: str, value: Tensor, where: str) -> None:
        entry = self.keys[key]
        array = value.detach().cpu().numpy()
        if str(array.dtype) != entry["dtype"] or list(array.shape[1:]) != entry["shape"]:
            raise ValueError(
                f"{where}: attribute '{key}' has dtype {array.dtype} and rows of shape "
                f"{list(array.shape[1:])}, the first structure {entry['dtype']} and "
                f"{entry['shape']}: every structure must have the same")
        entry["buffer"].append(np.ascontiguousarray(array))
        entry["buffered"] += array.nbytes
        entry["rows"] += array.shape[0]
        entry["offsets"].append(entry["rows"])
        if entry["buffered"] >= _FLUSH_BYTES or len(entry["buffer"]) >= _FLUSH_STRUCTURES:
            self._flush(entry)

    @staticmethod
    def _flush(entry: dict) -> None:
        for array in entry["buffer"]:
            entry["bin"].write(array.tobytes())
        entry["slices"].write(np.asarray(entry["offsets"], dtype=np.int64).tobytes())
        entry["buffer"], entry["buffered"], entry["offsets"] = [], 0, []

    def finish(self, record: Dict[str, object]) -> None:
        """Writes the last rows and ``meta.json`` (with :obj:`record`, what
        the store was built from) and puts the folder in place."""
        if self.num == 0:
            raise ValueError("no structures to store")
        keys = {}
        for key, entry in self.keys.items():
            self._flush(entry)
            entry["bin"].close()
            entry["slices"].close()
            keys[key] = dict(dtype=entry["dtype"], shape=entry["shape"], rows=entry["rows"],
                             sha256=_file_sha256(self.part, key))
        meta = {"format": FORMAT, "num": self.num, "keys": keys, "record": record}
        with open(os.path.join(self.part, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        shutil.rmtree(self.folder, ignore_errors=True)
        os.replace(self.part, self.folder)


def _file_sha256(folder: str, key: str) -> str:
    digest = hashlib.sha256()
    for suffix in ("bin", "slices"):
        with open(os.path.join(folder, f"{key}.{suffix}"), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def check_store(folder: str, record: Dict[str, object]) -> Optional[str]:
    """What is wrong with the store in :obj:`folder` (:obj:`None` if
    nothing): missing, of another format, built from other sources or
    settings than :obj:`record`, or with files that do not match their
    size or SHA-256 (read in chunks)."""
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        return f"its meta.json could not be read ({type(e).__name__})"
    if meta.get("format") != FORMAT:
        return f"it has format {meta.get('format')}, not {FORMAT}"
    # Compared as JSON reads it back (tuples become lists).
    problem = record_problem(meta.get("record"), json.loads(json.dumps(record)))
    if problem is not None:
        return problem
    for key, entry in meta["keys"].items():
        itemsize = np.dtype(entry["dtype"]).itemsize * int(np.prod(entry["shape"], dtype=np.int64))
        sizes = (entry["rows"] * itemsize, (meta["num"] + 1) * 8)
        for suffix, size in zip(("bin", "slices"), sizes):
            path = os.path.join(folder, f"{key}.{suffix}")
            if not os.path.isfile(path) or os.path.getsize(path) != size:
                return f"{key}.{suffix} is missing or has the wrong size"
        if _file_sha256(folder, key) != entry["sha256"]:
            return (f"the files of '{key}' do not match their SHA-256 checksum (bytes changed "
                    "after they were written)")
    return None


def open_store(folder: str) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], int]:
    """The attributes and offsets of a store as tensors over read-only
    memory maps (copy-on-write: nothing is read until used, and nothing
    written to them reaches the files), and its number of structures."""
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    data, slices = {}, {}
    for key, entry in meta["keys"].items():
        rows = np.memmap(os.path.join(folder, f"{key}.bin"), dtype=entry["dtype"], mode="c",
                         shape=(entry["rows"], *entry["shape"]))
        offsets = np.memmap(os.path.join(folder, f"{key}.slices"), dtype=np.int64, mode="c",
                            shape=(meta["num"] + 1,))
        data[key], slices[key] = torch.from_numpy(rows), torch.from_numpy(offsets)
    return data, slices, int(meta["num"])


def write_store(folder: str, structures: Iterable, record: Dict[str, object]) -> int:
    """Streams :obj:`structures` (pairs of a :class:`Data` and a name for
    errors) to the store :obj:`folder`; returns their number."""
    writer = DiskWriter(folder)
    try:
        for data, where in structures:
            writer.append(data, where)
        writer.finish(record)
    finally:
        for entry in writer.keys.values():
            entry["bin"].close()
            entry["slices"].close()
        shutil.rmtree(writer.part, ignore_errors=True)
    return writer.num
