import pytest
import torch

from acn_pyg import AtomCloudNet
from acn_pyg.utils.ema import ExponentialMovingAverage


def train_steps(model, averages, steps=6):
    torch.manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    z = torch.tensor([6, 1, 1, 8, 7])
    pos = torch.randn(5, 3)
    for _ in range(steps):
        optimizer.zero_grad()
        model(z, pos).pow(2).sum().backward()
        optimizer.step()
        for avg in averages:
            avg.update_parameters(model)


def test_equals_torch_averaged_model_and_shares_its_state_dict():
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=8, num_layers=2)
    reference = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.8))
    ema = ExponentialMovingAverage(model, 0.8)
    train_steps(model, [reference, ema])
    for ours, theirs in zip(ema.module.state_dict().values(),
                            reference.module.state_dict().values()):
        assert torch.equal(ours, theirs)
    # The average is not the model: it lags behind it.
    pairs = zip(ema.module.parameters(), model.parameters())
    assert not all(torch.equal(a, b) for a, b in pairs)
    # Checkpoints move between the two (old runs' last.pt hold AveragedModel's).
    assert ema.state_dict().keys() == reference.state_dict().keys()
    restored = ExponentialMovingAverage(model, 0.8)
    restored.load_state_dict(reference.state_dict())
    assert restored.num_updates == 6
    back = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.8))
    back.load_state_dict(ema.state_dict())
    assert int(back.n_averaged) == 6
    # Continuing from the restored state gives what continuing the original gives.
    train_steps(model, [ema, restored], steps=2)
    for a, b in zip(ema.module.parameters(), restored.module.parameters()):
        assert torch.equal(a, b)


def test_first_update_copies_and_the_copy_is_independent():
    model = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    assert torch.equal(ema.module.weight, model.weight)
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.weight, model.weight - 1.0)
    assert not ema.module.weight.requires_grad


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(torch.nn.Linear(2, 2), 1.0)
    with pytest.raises(ValueError, match="running statistics"):
        ExponentialMovingAverage(torch.nn.Sequential(torch.nn.BatchNorm1d(3)), 0.9)
    ema = ExponentialMovingAverage(torch.nn.Linear(2, 2), 0.9)
    with pytest.raises(ValueError, match="parameters"):
        ema.update_parameters(torch.nn.Linear(2, 2, bias=False))
    with pytest.raises(KeyError, match="n_averaged"):
        ema.load_state_dict(torch.nn.Linear(2, 2).state_dict())
