import torch

from acn_pyg.utils.ranges import expand_ranges


def test_expand_ranges():
    owner, within = expand_ranges(torch.tensor([2, 0, 3]))
    assert owner.tolist() == [0, 0, 2, 2, 2]
    assert within.tolist() == [0, 1, 0, 1, 2]
    owner, within = expand_ranges(torch.zeros(0, dtype=torch.long))
    assert owner.numel() == within.numel() == 0
