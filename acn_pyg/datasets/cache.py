"""Processed-data caches that are checked when read: a SHA-256 of their
contents and a record of what they were built from."""
import hashlib
import os
import warnings
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor

from acn_pyg.utils.io import atomic_save


def content_sha256(values: Dict[str, object]) -> str:
    """SHA-256 of the contents of :obj:`values`, in key order: every
    tensor's dtype, shape and bytes, lists of strings joined, anything else
    by its :func:`repr`; nested dictionaries (such as :obj:`slices`)
    likewise. Written beside data files and checked when they are read, so
    that a changed byte is found."""
    digest = hashlib.sha256()

    def update(value) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                digest.update(f"\0{key}\0".encode())
                update(value[key])
        elif isinstance(value, Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{flat.dtype}{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy())
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            digest.update(f"{len(value)} strings\0".encode())
            digest.update("\0".join(value).encode())
        else:
            digest.update(repr(value).encode())

    update(values)
    return digest.hexdigest()


def load_checked(path: str, check: Callable[[object], Optional[str]],
                 rebuild: Callable[[], None], what: str) -> dict:
    """The cache at :obj:`path`. If it fails to load, or :obj:`check`
    returns a problem (a sentence; :obj:`None` when the cache is sound), it
    is rebuilt with a warning that names :obj:`what`, the file and the
    problem; a rebuilt cache that still fails raises a
    :class:`RuntimeError`."""
    try:
        blob = torch.load(path, weights_only=True)
        problem = check(blob)
    except Exception as e:  # a truncated or foreign file
        problem = f"it could not be loaded ({type(e).__name__}: {e})"
    if problem is None:
        return blob
    warnings.warn(f"{what} cache {path} is stale or corrupt: {problem}; rebuilding it")
    rebuild()
    blob = torch.load(path, weights_only=True)
    problem = check(blob)
    if problem is not None:
        raise RuntimeError(f"{what} cache {path} failed its checks after a rebuild: {problem}")
    return blob


def record_problem(record, wanted: Dict[str, object]) -> Optional[str]:
    """What differs between the :obj:`record` of what a cache was built from
    and the :obj:`wanted` one (:obj:`None` if nothing): the fields named."""
    if record == wanted:
        return None
    if not isinstance(record, dict):
        return "its metadata is not a record of what it was built from"
    differ = sorted(k for k in set(record) | set(wanted) if record.get(k) != wanted.get(k))
    return f"it was built from other sources or settings (it differs in: {', '.join(differ)})"


def check_cache(blob, wanted: Dict[str, object]) -> Optional[str]:
    """What is wrong with a loaded cache :obj:`blob` of :func:`write_cache`
    (:obj:`None` if nothing): missing parts, a record of what it was built
    from that differs from :obj:`wanted`, or contents that do not match
    their checksum."""
    if not isinstance(blob, dict) or not {"data", "slices", "meta", "sha256"} <= set(blob):
        return "it lacks the data, slices, metadata or checksum"
    problem = record_problem(blob["meta"], wanted)
    if problem is not None:
        return problem
    if content_sha256({"data": blob["data"], "slices": blob["slices"]}) != blob["sha256"]:
        return ("its contents do not match their SHA-256 checksum (bytes changed after it was "
                "written)")
    return None


def filtered_and_transformed(dataset, structures: List) -> List:
    """:obj:`structures` kept by the dataset's :obj:`pre_filter` and passed
    through its :obj:`pre_transform` (either may be :obj:`None`)."""
    if dataset.pre_filter is not None:
        structures = [d for d in structures if dataset.pre_filter(d)]
    if dataset.pre_transform is not None:
        structures = [dataset.pre_transform(d) for d in structures]
    return structures


def write_cache(dataset, data, slices: Dict[str, Tensor], meta: Dict[str, object]) -> None:
    """Writes collated :obj:`data` and :obj:`slices` with the record
    :obj:`meta` and their SHA-256 to the dataset's processed file,
    atomically: readers see the old file or the new one."""
    os.makedirs(dataset.processed_dir, exist_ok=True)
    data = data.to_dict()
    atomic_save({"data": data, "slices": slices, "meta": meta,
                 "sha256": content_sha256({"data": data, "slices": slices})},
                dataset.processed_paths[0])
