import os

import pytest
import torch

import prediction_cache
from prediction_cache import PredictionCache


@pytest.fixture
def entry(tmp_path):
    gen = torch.Generator().manual_seed(0)
    checkpoint = tmp_path / "best.pt"
    torch.save({"w": torch.randn(3, generator=gen)}, checkpoint)
    true = {"val": torch.randn(5, generator=gen, dtype=torch.float64),
            "test": torch.randn(7, generator=gen, dtype=torch.float64)}
    pred = {s: v + 0.1 * torch.randn(v.shape, generator=gen, dtype=torch.float64)
            for s, v in true.items()}
    return str(checkpoint), true, pred, PredictionCache(str(tmp_path / "cache"))


def test_a_saved_entry_comes_back_for_the_same_checkpoint_molecules_and_code(entry):
    checkpoint, true, pred, cache = entry
    assert cache.load(checkpoint, true) is None
    path = cache.save(checkpoint, true, pred)
    assert os.path.dirname(path) == cache.directory and os.listdir(cache.directory) == [
        os.path.basename(path)]  # no temporary file left
    back = cache.load(checkpoint, true)
    assert back.keys() == pred.keys()
    for s in pred:
        assert torch.equal(back[s], pred[s])


def test_other_checkpoint_molecules_or_code_find_nothing(entry, tmp_path, monkeypatch):
    checkpoint, true, pred, cache = entry
    cache.save(checkpoint, true, pred)
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(3)}, other)
    assert cache.load(str(other), true) is None
    shuffled = {**true, "test": true["test"].flip(0)}  # same values, other order
    assert cache.load(checkpoint, shuffled) is None
    assert cache.load(checkpoint, {"val": true["val"]}) is None
    monkeypatch.setattr(prediction_cache, "_FINGERPRINT", "changed code")
    assert cache.load(checkpoint, true) is None


def test_the_code_fingerprint_follows_the_package_sources(monkeypatch):
    first = prediction_cache.code_fingerprint()
    assert first == prediction_cache.code_fingerprint() and len(first) == 64
    monkeypatch.setattr(prediction_cache, "_FINGERPRINT", None)
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert prediction_cache.code_fingerprint() != first


def test_a_broken_entry_is_warned_about_and_not_used(entry):
    checkpoint, true, pred, cache = entry
    path = cache.save(checkpoint, true, pred)
    with open(path, "wb") as f:
        f.write(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unusable"):
        assert cache.load(checkpoint, true) is None
    # An entry under the right name that holds another key or other shapes.
    torch.save({"key": "someone else", "pred": pred}, path)
    with pytest.warns(RuntimeWarning, match="key"):
        assert cache.load(checkpoint, true) is None
    key = cache.key(checkpoint, true)
    torch.save({"key": key, "pred": {**pred, "val": pred["val"][:3]}}, path)
    with pytest.warns(RuntimeWarning, match="number"):
        assert cache.load(checkpoint, true) is None
    # Saving again repairs it.
    cache.save(checkpoint, true, pred)
    assert torch.equal(cache.load(checkpoint, true)["val"], pred["val"])


def test_save_refuses_predictions_that_do_not_fit_the_molecules(entry):
    checkpoint, true, pred, cache = entry
    with pytest.raises(ValueError, match="shapes"):
        cache.save(checkpoint, true, {**pred, "test": pred["test"][:-1]})
    with pytest.raises(ValueError, match="splits"):
        cache.save(checkpoint, true, {"val": pred["val"]})


def test_the_source_fingerprint_sees_code_not_comments_or_docstrings(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    model = package / "sub" / "model.py"

    def fingerprint_of(text):
        model.write_text(text)
        return prediction_cache.source_fingerprint(str(package))

    (package / "__init__.py").write_text('"""A package."""\n__version__ = "1"\n')
    base = fingerprint_of('"""Module."""\n\n\ndef f(x):\n    """Doubles."""\n    return 2 * x\n')
    reworded = fingerprint_of('"""Other words."""\n# a comment\n\ndef f(x):  # why\n'
                              '    """Twice x,\n    over two lines."""\n    return 2*x\n')
    assert reworded == base
    assert fingerprint_of('def f(x):\n    return 3 * x\n') != base
    # A string that is not a docstring is code.
    assert fingerprint_of('def f(x):\n    s = "twice"\n    return 2 * x\n') != base
    assert fingerprint_of('def f(x):\n    return 2 * x\n') == base
    (package / "sub" / "extra.py").write_text("")
    assert prediction_cache.source_fingerprint(str(package)) != base  # a new module counts
