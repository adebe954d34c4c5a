"""Does a polarizability-tensor run get the shape of the anisotropy right?
For each finished run (acn-pyg train --target polarizability), on its test
molecules: the traceless parts B of the predicted and the reference tensors,
how often sign(det B) agrees (prolate against oblate), the median ratio of
their norms, the median of |det B| / |B|^3 (how far from biaxial) and the
MAE of the principal values.

    python research/tensor_shape_sign.py runs/properties/polarizability_tensor_n1000_s0
"""
import argparse
import json

import torch


def shape_agreement(run_dir: str) -> dict:
    from torch_geometric.loader import DataLoader

    from acn_pyg import load_model
    from acn_pyg.train import prepare
    from acn_pyg.train.report import load_run, run_config

    prep = prepare(run_config(load_run(run_dir)))
    model = load_model(run_dir)
    pred, true = [], []
    with torch.no_grad():
        for b in DataLoader(prep.dataset[prep.split["test"]], batch_size=64):
            pred.append(model(b.z, b.pos, b.batch))
            true.append(b.polarizability.reshape(-1, 3, 3))
    pred, true = torch.cat(pred).double(), torch.cat(true).double()
    eye = torch.eye(3, dtype=torch.float64)

    def traceless(a):
        return a - a.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * eye

    bp, bt = traceless(pred), traceless(true)
    dp, dt = torch.linalg.det(bp), torch.linalg.det(bt)
    np_, nt = bp.flatten(1).norm(dim=1), bt.flatten(1).norm(dim=1)
    return {"run": run_dir,
            "det_sign_agreement": float((dp.sign() == dt.sign()).double().mean()),
            "norm_ratio_median": float((np_ / nt).median()),
            "shape_pred_median": float((dp / np_.pow(3)).abs().median()),
            "shape_true_median": float((dt / nt.pow(3)).abs().median()),
            "principal_mae": float((torch.linalg.eigvalsh(pred)
                                    - torch.linalg.eigvalsh(true)).abs().mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="finished runs' folders")
    args = p.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        print(json.dumps(shape_agreement(run)), flush=True)


if __name__ == "__main__":
    main()
