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
