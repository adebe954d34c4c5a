"""research/per_example_configs.py: configurations become per_example jobs."""
import argparse

import pytest

from per_example_configs import jobs


def _args(**kwargs):
    values = dict(size=100, seeds="0,2", minutes=1.0, root="data/QM9")
    values.update(kwargs)
    return argparse.Namespace(**values)


def test_every_configuration_runs_at_every_seed_with_its_fields():
    out = jobs([{"label": "p", "config": {"product_channels": 4}, "lr": 1e-3, "patience": 30,
                 "amsgrad": True}, {"label": "d"}], _args())
    assert [(j["label"], j["seed"]) for j in out] == [("p", 0), ("p", 2), ("d", 0), ("d", 2)]
    assert out[0]["config"] == {"product_channels": 4} and out[0]["lr"] == 1e-3
    assert out[0]["patience"] == 30 and "patience" not in out[2]
    assert out[0]["amsgrad"] is True and "amsgrad" not in out[2]
    assert out[2]["config"] == {} and "lr" not in out[2] and out[2]["model"] == "acn"


@pytest.mark.parametrize("config", [{"config": {}}, {"label": "x", "lr_": 1e-3}])
def test_a_configuration_without_a_label_or_with_unknown_keys_is_refused(config):
    with pytest.raises(ValueError, match="'label'"):
        jobs([config], _args())


def test_a_configuration_with_an_unknown_field_is_refused_before_any_run():
    with pytest.raises(TypeError, match="product_channel"):
        jobs([{"label": "x", "config": {"product_channel": 4}}], _args())


def test_mace_options_reach_the_job_and_wrong_ones_are_refused():
    out = jobs([{"label": "m", "model": "mace", "mace": {"correlation": 2}}], _args(seeds="0"))
    assert out[0]["model"] == "mace" and out[0]["mace"] == {"correlation": 2}
    with pytest.raises(ValueError, match="corelation"):
        jobs([{"label": "m", "model": "mace", "mace": {"corelation": 2}}], _args())
    with pytest.raises(ValueError, match="'model': 'mace'|\"model\": \"mace\""):
        jobs([{"label": "m", "mace": {"correlation": 2}}], _args())


def test_acn_layers_reach_a_mace_job_and_wrong_ones_are_refused():
    layers = {"radial_gain": 1.5, "residual": False}
    out = jobs([{"label": "h", "model": "mace", "acn_layers": layers}], _args(seeds="0"))
    assert out[0]["acn_layers"] == layers and out[0]["model"] == "mace"
    with pytest.raises(ValueError, match="radial_gian"):
        jobs([{"label": "h", "model": "mace", "acn_layers": {"radial_gian": 1.5}}], _args())
    with pytest.raises(ValueError, match="lmax"):  # set from MACE's max_ell
        jobs([{"label": "h", "model": "mace", "acn_layers": {"lmax": 3}}], _args())
    with pytest.raises(ValueError, match="'acn_layers'.*\"model\": \"mace\""):
        jobs([{"label": "h", "acn_layers": {}}], _args())


def test_acn_parts_reach_a_mace_job_and_unknown_ones_are_refused():
    out = jobs([{"label": "h", "model": "mace", "acn_parts": ["radial", "skip"]}],
               _args(seeds="0"))
    assert out[0]["acn_parts"] == ["radial", "skip"]
    with pytest.raises(ValueError, match="readout"):
        jobs([{"label": "h", "model": "mace", "acn_parts": ["readout"]}], _args())
    with pytest.raises(ValueError, match="'acn_parts'"):
        jobs([{"label": "h", "acn_parts": ["radial"]}], _args())


def test_parametrisation_options_reach_the_job_and_a_wrong_lr_scale_is_refused():
    out = jobs([{"label": "f", "lr_scale": "fan_in", "readout_hidden": 16,
                 "radial_bias": False}], _args(seeds="0"))
    assert (out[0]["lr_scale"], out[0]["readout_hidden"], out[0]["radial_bias"]) == (
        "fan_in", 16, False)
    with pytest.raises(ValueError, match="lr_scale"):
        jobs([{"label": "f", "lr_scale": "fan_out"}], _args())


def _small_model():
    import torch

    from acn_pyg import AtomCloudNet

    torch.manual_seed(0)
    return AtomCloudNet(hidden_channels=16, num_layers=2, radial_hidden=8, product_channels=16,
                        product_basis=True, weight_norm=False)


def test_fan_in_groups_hold_every_parameter_once_at_lr_over_sqrt_fan_in():
    import math

    import per_example

    model = _small_model()
    groups = per_example.fan_in_param_groups(model, 1e-2)
    held = [p for g in groups for p in g["params"]]
    assert len(held) == len(set(map(id, held))) == len(list(model.parameters()))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    conv = model.convs[0]
    assert math.isclose(lr_of[id(conv.radial.lin1.weight)], 1e-2 / math.sqrt(8))
    assert math.isclose(lr_of[id(conv.radial.lin2.weight)], 1e-2 / math.sqrt(8))
    assert math.isclose(lr_of[id(conv.product.projection.weights[0])], 1e-2 / 4)
    assert lr_of[id(conv.radial.lin1.bias)] == lr_of[id(model.embedding.weight)] == 1e-2
    from acn_pyg import AtomCloudNet
    with pytest.raises(ValueError, match="weight_norm"):
        per_example.fan_in_param_groups(AtomCloudNet(hidden_channels=8, num_layers=1), 1e-2)


def test_mace_readout_and_radial_mlp_without_biases():
    import torch

    import per_example

    model = _small_model()
    z, pos = torch.tensor([6, 1, 1, 8]), torch.randn(4, 3)
    per_example.one_readout(model, 4)
    per_example.radial_without_biases(model)
    assert [m.out_features for m in model.output_mlp if hasattr(m, "out_features")] == [4, 1]
    biases = [lin.bias for conv in model.convs for lin in (conv.radial.lin1, conv.radial.lin2)]
    assert all(not b.requires_grad and not b.any() for b in biases)
    model(z, pos).sum().backward()
    assert all(b.grad is None for b in biases)
    assert model.output_mlp[0].weight.grad is not None


def test_layer_readouts_add_a_linear_map_of_every_earlier_layer_s_scalars():
    import torch

    import per_example
    from acn_pyg import AtomCloudNet

    model = _small_model()
    z, pos = torch.tensor([6, 1, 1, 8, 1]), torch.randn(5, 3)
    per_example.one_readout(model, 4)
    before = model(z, pos)
    per_example.layer_readouts(model)
    first = []
    model.gates[0].register_forward_hook(lambda m, args, out: first.append(out[:, :16]))
    (lin,) = model.output_mlp.linears
    with torch.no_grad():
        lin.weight.zero_()
    torch.testing.assert_close(model(z, pos), before)
    with torch.no_grad():
        lin.weight[0, 3] = 1.0
    first.clear()
    after = model(z, pos)
    torch.testing.assert_close(after - before, first[0][:, 3].sum().view(1, 1))
    # the same again (nothing kept from the last call), and invariant under rotation
    rotation = torch.linalg.qr(torch.randn(3, 3))[0]
    torch.testing.assert_close(model(z, pos @ rotation.T), after, atol=1e-5, rtol=1e-5)
    after.sum().backward()
    assert lin.weight.grad is not None and model.convs[0].radial.lin1.weight.grad is not None
    with pytest.raises(ValueError, match="pooling='add'"):
        per_example.layer_readouts(AtomCloudNet(hidden_channels=8, num_layers=2,
                                                pooling="mean"))


def test_layer_readouts_reach_the_job():
    out = jobs([{"label": "r", "layer_readouts": True}], _args(seeds="0"))
    assert out[0]["layer_readouts"] is True
