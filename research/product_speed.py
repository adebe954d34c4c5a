"""Cost of SymmetricProduct's implementation: AtomCloudNet's train step
(forward, backward, Adam) with every layer's product as in this tree and as
in an earlier commit (the same weights, outputs checked equal), timed
alternately in one process on the same real QM9 batch, float32.

    python research/product_speed.py --before 67d3fd3 --threads 1 --repeats 10
"""
import argparse
import copy
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import adam_step, machine, median, qm9_batch, time_alternating  # noqa: E402

from acn_pyg import AtomCloudNet  # noqa: E402

PATH = "acn_pyg/nn/conv/symmetric_product.py"

#: The configurations timed: research/per_example_configs.py's "all of MACE's
#: parts" at lmax 2 and 3, correlation 2 and 3, and speed.py's acn-products.
MACE_PARTS = dict(product_channels=64, product_basis=True, element_dependent=True,
                  scalar_activation=False, weight_norm=False, radial_gain=1.5,
                  embedding_std=0.45, self_interaction_rank=5, residual=False)
CONFIGS = {
    "mace_parts_lmax2": dict(MACE_PARTS, lmax=2),
    "mace_parts_lmax3": dict(MACE_PARTS, lmax=3),
    "mace_parts_lmax3_correlation3": dict(MACE_PARTS, lmax=3, product_correlation=3),
    "acn_products": dict(hidden_irreps="64x0e+16x1o+16x2e", product_channels=16),
}


def product_class(commit: str):
    """SymmetricProduct as it was at :obj:`commit`."""
    source = subprocess.run(["git", "-C", ROOT, "show", f"{commit}:{PATH}"], check=True,
                            capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"symmetric_product_{commit}", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module.SymmetricProduct


def with_products_of(model, cls):
    """A copy of :obj:`model` whose products are instances of :obj:`cls` with
    the same weights."""
    model = copy.deepcopy(model)
    for conv in model.convs:
        old = conv.product
        new = cls(old.irreps_in, old.channels, filter_ir_out=[ir for _, ir in old.irreps_out],
                  correlation=old.correlation, attr_channels=old.attr_channels,
                  contract=old.contract)
        new.load_state_dict(old.state_dict())
        conv.product = new
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the commit to compare with")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--root", default="data/QM9")
    p.add_argument("--out", default="research/results/product_speed.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    before = product_class(args.before)
    data = qm9_batch(args.batch_size, args.root)
    rows = []
    for name in args.configs.split(","):
        torch.manual_seed(0)
        now = AtomCloudNet(**CONFIGS[name])
        models = {"before": with_products_of(now, before), "now": now}
        with torch.no_grad():
            outputs = {k: m(data.z, data.pos, data.batch) for k, m in models.items()}
        gap = float((outputs["now"] - outputs["before"]).abs().max())
        scale = float(outputs["before"].abs().max())
        if gap > 1e-4 * max(scale, 1.0):
            raise AssertionError(f"{name}: outputs differ by {gap} (of {scale})")
        steps = {key: adam_step(model, data) for key, model in models.items()}
        times = time_alternating(steps, args.repeats)
        row = {"config": name, "max_output_difference": gap,
               **{f"{k}_s_per_step": median(v) for k, v in times.items()}}
        row["speed_up"] = row["before_s_per_step"] / row["now_s_per_step"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "configs": CONFIGS,
                   "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
