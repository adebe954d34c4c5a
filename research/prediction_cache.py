r"""Predictions of a checkpoint on fixed molecules, kept on disk so that
ensembles over many finished runs (:func:`ensemble.ensemble_test`)
do not run every member's model again each time.

An entry is found only for the same checkpoint bytes, the same reference
values (so the same molecules in the same order, the same target) and the
same code (the syntax trees of :mod:`acn_pyg`'s sources, not their comments or
docstrings, and the versions of torch, PyG and e3nn): a retrained checkpoint,
another split or a change of the package's code never reuses old predictions.
An entry that cannot be read, or that does not hold what its name promises, is
reported with a warning and computed again, never used."""
import ast
import hashlib
import os
import warnings
from typing import Dict, Optional

import torch
from torch import Tensor

_FINGERPRINT: Optional[str] = None


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _code_only(source: bytes, filename: str) -> str:
    """A module's syntax tree without its docstrings, comments, formatting or
    line numbers: what it computes, not how it is written down."""
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if ast.get_docstring(node, clean=False) is not None:
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def source_fingerprint(root: str) -> str:
    """SHA-256 of every ``.py`` file below :obj:`root`, by relative path and
    syntax tree (:func:`_code_only`): a change to code changes it; a change to
    comments, docstrings or formatting alone does not."""
    h = hashlib.sha256()
    sources = sorted(os.path.relpath(os.path.join(d, f), root)
                     for d, _, files in os.walk(root) for f in files if f.endswith(".py"))
    for rel in sources:
        with open(os.path.join(root, rel), "rb") as f:
            code = _code_only(f.read(), rel)
        h.update(f"{rel}\n{len(code)}\n{code}".encode())
    return h.hexdigest()


def code_fingerprint() -> str:
    """SHA-256 of the installed :mod:`acn_pyg`'s code
    (:func:`source_fingerprint`) and of the torch, torch_geometric and e3nn
    versions: what a model's predictions depend on besides its weights.
    Computed once per process. Comments and docstrings do not count, so an
    edit of them alone keeps the cache."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import e3nn
        import torch_geometric

        import acn_pyg
        h = hashlib.sha256()
        for version in (torch.__version__, torch_geometric.__version__, e3nn.__version__):
            h.update(f"{version}\n".encode())
        h.update(source_fingerprint(os.path.dirname(os.path.abspath(acn_pyg.__file__))).encode())
        _FINGERPRINT = h.hexdigest()
    return _FINGERPRINT


def values_digest(true: Dict[str, Tensor]) -> str:
    """SHA-256 of reference values per split name (float64 bytes, in order)."""
    h = hashlib.sha256()
    for name in sorted(true):
        values = true[name].detach().to("cpu", torch.float64).contiguous()
        h.update(f"{name}:{values.numel()}\n".encode())
        h.update(values.numpy().tobytes())
    return h.hexdigest()


class PredictionCache:
    r"""A folder of cached predictions, one file per (checkpoint, molecules,
    code): ``<checkpoint>_<molecules>_<code>.pt``, each part the first 16 hex
    digits of its SHA-256 (:func:`file_digest`, :func:`values_digest`,
    :func:`code_fingerprint`); the full key is stored inside and checked.

    Args:
        directory (str): where the entries are (created on the first save).
    """

    def __init__(self, directory: str):
        self.directory = directory

    def key(self, checkpoint: str, true: Dict[str, Tensor]) -> str:
        """The full key of :obj:`checkpoint`'s predictions for the molecules
        whose reference values are :obj:`true` (split name -> :math:`[N]`)."""
        return "_".join((file_digest(checkpoint), values_digest(true), code_fingerprint()))

    def path(self, key: str) -> str:
        return os.path.join(self.directory, "_".join(p[:16] for p in key.split("_")) + ".pt")

    def load(self, checkpoint: str, true: Dict[str, Tensor]) -> Optional[Dict[str, Tensor]]:
        """The cached predictions (split name -> :math:`[N]`, float64) of
        :obj:`checkpoint` for :obj:`true`'s molecules, or :obj:`None` when
        there is no valid entry (a broken one is warned about)."""
        key = self.key(checkpoint, true)
        path = self.path(key)
        if not os.path.exists(path):
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(entry, dict) or entry.get("key") != key:
                raise ValueError("its key is not the one its name stands for")
            pred = entry["pred"]
            if set(pred) != set(true) or any(
                    not isinstance(pred[s], Tensor) or pred[s].shape != true[s].shape
                    for s in true):
                raise ValueError("its predictions do not match the molecules' number")
        except Exception as err:  # any unreadable entry is recomputed, never used
            warnings.warn(f"prediction cache entry {path} is unusable ({err}); "
                          "computing the predictions again", RuntimeWarning)
            return None
        return {s: pred[s].double() for s in true}

    def save(self, checkpoint: str, true: Dict[str, Tensor], pred: Dict[str, Tensor]) -> str:
        """Stores :obj:`pred` for :obj:`checkpoint` and :obj:`true`'s
        molecules (written to a temporary file, then renamed: a crash leaves
        no half entry); returns the entry's path."""
        if set(pred) != set(true) or any(pred[s].shape != true[s].shape for s in true):
            raise ValueError("predictions and reference values differ in splits or shapes")
        key = self.key(checkpoint, true)
        path = self.path(key)
        os.makedirs(self.directory, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save({"key": key, "pred": {s: p.detach().cpu().double() for s, p in pred.items()}},
                   tmp)
        os.replace(tmp, path)
        return path
