"""Greedy ensemble selection on held-out predictions (acn_pyg.ensemble)."""
import pytest
import torch

from acn_pyg.ensemble import greedy_selection


def test_greedy_selection_adds_members_while_the_mean_improves():
    true = torch.zeros(6, dtype=torch.float64)
    ones = torch.ones(6, dtype=torch.float64)
    # 0 and 1 err by +1 and -1 (their mean is exact); 2 by +1.5 and 3 by +0.9.
    preds = torch.stack([ones, -ones, 1.5 * ones, 0.9 * ones])
    # Best alone: member 3 (0.9); with 1: |0.9 - 1| / 2 = 0.05; then 0:
    # |0.9 - 1 + 1| / 3 = 0.3 and 2: |0.9 - 1 + 1.5| / 3 = 0.47 are worse: stop.
    assert greedy_selection(preds, true) == [3, 1]


def test_greedy_selection_leaves_out_a_member_that_only_adds_noise():
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(500, generator=gen, dtype=torch.float64)
    good = [true + 0.1 * torch.randn(500, generator=gen, dtype=torch.float64) for _ in range(3)]
    noisy = true + 3.0 * torch.randn(500, generator=gen, dtype=torch.float64)
    preds = torch.stack(good[:2] + [noisy] + good[2:])
    chosen = greedy_selection(preds, true)
    assert 2 not in chosen and len(chosen) >= 2 and len(set(chosen)) == len(chosen)
    mae = float((preds[chosen].mean(0) - true).abs().mean())
    singles = (preds - true).abs().mean(1)
    assert mae < float(singles.min())
    # One member: chosen alone.
    assert greedy_selection(preds[2:3], true) == [0]


def test_greedy_selection_checks_shapes():
    with pytest.raises(ValueError, match=r"shape \[K >= 1, N\]"):
        greedy_selection(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="reference values"):
        greedy_selection(torch.zeros(2, 4), torch.zeros(3))


def test_average_state_dicts_is_the_weighted_mean_of_floating_entries():
    from acn_pyg.ensemble import average_state_dicts
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 2, generator=gen), "n": torch.tensor(4)}
    b = {"w": torch.randn(3, 2, generator=gen), "n": torch.tensor(4)}
    mean = average_state_dicts([a, b])
    assert torch.allclose(mean["w"], (a["w"] + b["w"]) / 2) and mean["n"] == 4
    assert mean["w"].dtype == a["w"].dtype
    assert torch.allclose(average_state_dicts([a, b], [0.25, 0.75])["w"],
                          0.25 * a["w"] + 0.75 * b["w"])
    assert torch.equal(average_state_dicts([a])["w"], a["w"])
    with pytest.raises(ValueError, match="summing to 1"):
        average_state_dicts([a, b], [0.5, 0.6])
    with pytest.raises(ValueError, match="not floating point"):
        average_state_dicts([a, {**b, "n": torch.tensor(5)}])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([a, {**b, "w": torch.zeros(2, 3)}])
    with pytest.raises(ValueError, match="other entries"):
        average_state_dicts([a, {"w": b["w"]}])
