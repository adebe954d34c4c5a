"""The polarizability tensor's isotropic part against alpha as a scalar,
with the traceless part's loss weighted by W (TensorTask's
anisotropic_weight; the training program uses 1) and the shape term by S
(TensorTask's shape_weight): does the anisotropic loss cost the trace, and
does the shape term stop the prolate/oblate flips? The same runs as
benchmarks/properties.py (the training program, one CPU thread a run, two at
once, the same split and test molecules), one per weight pair and
initialisation seed; --alpha adds the scalar alpha run of each seed.

    python research/tensor_weight.py --weights 0,0.3 --seeds 0,1,2 --size 1000 --minutes 4
    python research/tensor_weight.py --weights 1,0.3 --shape-weights 2 --alpha --seeds 0,1,3
    python research/tensor_weight.py --weights 1 --shape-weights 2 --grad-scales 0.01,0.1 \
        --seeds 0,1,3
"""
import argparse
import functools
import itertools
import json
import os

from pool_runs import run_and_append


def one_run(job: dict) -> dict:
    import acn_pyg.train.data as data
    from acn_pyg.train import Config, run
    from acn_pyg.train.tasks import TensorTask

    extra = {}
    if job["weight"] is None:
        target, name = "alpha", f"alpha_n{job['size']}_s{job['seed']}"
    else:
        target = "polarizability"
        name = f"w{job['weight']:g}_sh{job['shape']:g}_n{job['size']}_s{job['seed']}"
        data.TensorTask = functools.partial(TensorTask, anisotropic_weight=job["weight"],
                                            shape_weight=job["shape"])
        extra["anisotropic_gradient"] = job.get("grad_scale", 1.0)
        if extra["anisotropic_gradient"] != 1.0:
            name += f"_g{job['grad_scale']:g}"
    cfg = Config(target=target, train_size=job["size"], val_size=500, test_size=1000,
                 time_budget=job["minutes"], threads=1, device="cpu", plot=False,
                 init_seed=job["seed"], root=job["root"], out=os.path.join(job["runs"], name),
                 **extra)
    m = run(cfg)
    row = {**job, "test_mae": m["test_mae"], "epochs": m["epochs_trained"]}
    for key in ("test_isotropic_mae", "test_shape_sign_agreement"):
        if key in m:
            row[key] = m[key]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="0,0.3")
    p.add_argument("--shape-weights", default="0")
    p.add_argument("--grad-scales", default="1",
                   help="Config.anisotropic_gradient: the traceless part's gradient into the "
                        "layers, times G (default: 1, all of it)")
    p.add_argument("--alpha", action="store_true", help="add the scalar alpha run of each seed")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--root", default="data/QM9")
    p.add_argument("--runs", default="runs/tensor_weight")
    p.add_argument("--out", default="research/results/tensor_weight.json")
    args = p.parse_args()
    triples = [(float(w), float(sh), float(g)) for w, sh, g in itertools.product(
        args.weights.split(","), args.shape_weights.split(","), args.grad_scales.split(","))]
    if args.alpha:
        triples = [(None, None, 1.0)] + triples
    jobs = [dict(weight=w, shape=sh, grad_scale=g, seed=int(s), size=args.size,
                 minutes=args.minutes, root=args.root, runs=args.runs)
            for s in args.seeds.split(",") for w, sh, g in triples]
    run_and_append(one_run, jobs, args.out)


if __name__ == "__main__":
    main()
