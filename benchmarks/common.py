"""Shared helpers of the benchmark scripts: real QM9 batches, alternating
timers and a machine description for the JSON results."""
import ctypes
import datetime
import os
import platform
import statistics
import threading
import time
from typing import Callable, Dict, List, Optional

import torch

from acn_pyg.train import cpu_model


def machine() -> Dict[str, object]:
    import e3nn
    import torch_geometric

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "e3nn": e3nn.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torch_cluster
        info["torch_cluster"] = torch_cluster.__version__
    except ImportError:
        info["torch_cluster"] = None
    return info


def qm9_batch(num_molecules: int, root: str = "data/QM9", seed: int = 0, device="cpu",
              subset=None):
    """A batch of real QM9 molecules drawn at random (seeded), from the QM9
    in ``root`` or from a subset file (benchmarks/qm9_subset.py) holding them."""
    from torch_geometric.data import Batch

    from acn_pyg.datasets import QM9, QM9Subset

    dataset = QM9Subset(subset) if subset else QM9(root)
    total = dataset.num_total if subset else len(dataset)
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:num_molecules]
    if subset:
        idx = dataset.local(idx)
    batch = Batch.from_data_list([dataset[int(i)] for i in idx])
    return batch.to(device)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_alternating(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int = 2,
                     device="cpu") -> Dict[str, List[float]]:
    """Runs each function in turn, ``repeats`` rounds, so that a noisy machine
    slows all of them alike; returns seconds per call for every round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def adam_step(model, data, lr: float = 1e-3) -> Callable[[], None]:
    """One train step of :obj:`model` on the batch :obj:`data` (forward,
    mean squared output as the loss, backward, Adam at :obj:`lr`), as a
    function to time."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step() -> None:
        opt.zero_grad()
        model(data.z, data.pos, data.batch).pow(2).mean().backward()
        opt.step()
    return step


def median(values: List[float]) -> float:
    return statistics.median(values)


def peak_memory_mb(fn: Callable[[], object], device="cpu") -> float:
    """Peak memory one call adds: CUDA allocations on a GPU; on CPU the
    process's resident set, sampled every millisecond, above its level before
    the call (freed heap is first handed back to the system with malloc_trim)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    import psutil

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(0.0, (max(peak[0], proc.memory_info().rss) - base) / 2 ** 20)


#: ATen ops that only make a view: no kernel runs for them.
VIEW_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "_reshape_alias", "expand", "t", "transpose", "permute",
    "select", "slice", "unsqueeze", "squeeze", "as_strided", "alias", "detach", "unflatten",
    "flatten", "split", "split_with_sizes", "narrow", "unbind", "chunk", "view_as",
    "expand_as", "diagonal", "lift_fresh"})
#: ATen ops that copy a result to the host: on a GPU each waits for the queue.
SYNC_OPS = frozenset({"_local_scalar_dense", "item", "nonzero", "masked_select", "unique",
                      "_unique2", "unique_consecutive"})


def _hidden_sync(name: str, args, kwargs) -> bool:
    """Ops that read a size from the device before they can allocate: indexing
    with a boolean mask, repeat_interleave without ``output_size``, bincount."""
    if name in ("index", "index_put", "index_put_"):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in indices)
    if name == "repeat_interleave":
        return kwargs.get("output_size") is None and not (
            len(args) > 3 and args[3] is not None)
    return name == "bincount"


def count_ops(fn: Callable[[], object]) -> Dict[str, int]:
    """ATen ops one call dispatches that launch a kernel (views excluded) and
    the host syncs (value reads: ``.item()``, ``int(t)``, ``nonzero``, boolean
    masks, ``bincount``...; a ``.tolist()`` of many values counts once). Where a step is bound by
    launch overhead (small molecules on a GPU) its time follows the kernel
    count, so this is a device-independent proxy for GPU step time."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts = {"ops": 0, "syncs": 0}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name not in VIEW_OPS:
                counts["ops"] += 1
            if name in SYNC_OPS or _hidden_sync(name, args, kwargs or {}):
                counts["syncs"] += 1
            return func(*args, **(kwargs or {}))

    tolist = torch.Tensor.tolist

    def counted_tolist(self):  # not dispatched as an op on CPU tensors
        counts["syncs"] += 1
        return tolist(self)

    torch.Tensor.tolist = counted_tolist
    try:
        with Count():
            fn()
    finally:
        torch.Tensor.tolist = tolist
    return counts


def plain_loop(model, prep, lr: float, batch_size: int, minutes: float, seed: int,
               ema: float = 0.0, features=None, amsgrad: bool = False,
               curve: Optional[list] = None, patience: int = 5, param_groups=None):
    """A plain PyTorch training loop, not this package's training program:
    Adam at :obj:`lr` (AMSGrad if :obj:`amsgrad`), L1 loss on the target of
    :obj:`prep` (a :func:`acn_pyg.train.prepare`) in units of its std,
    ReduceLROnPlateau on the validation MAE (halving the rate after
    :obj:`patience` epochs without improvement), PyTorch's weight average when
    :obj:`ema` > 0, for :obj:`minutes`. :obj:`features` (optional) maps a
    batch to the model's :obj:`extra_features`. Returns the test MAE of the
    best validation epoch, that validation MAE and the epochs.

    If :obj:`curve` is a list, every epoch appends ``{"epoch", "seconds",
    "train_mae", "val_mae", "test_mae"}``: the clock of the loop (training and
    validation), the mean of the epoch's batch MAEs (in the model's training
    mode, as the weights moved), and the test MAE of the best validation epoch
    so far, computed whenever the validation MAE improves while the clock is
    stopped. :obj:`param_groups` (optional) replaces :obj:`model.parameters()`
    in the optimizer: groups of parameters with their own ``"lr"``."""
    import copy

    from torch_geometric.loader import DataLoader

    def call(m, data):
        extra = {} if features is None else {"extra_features": features(data)}
        return m(data.z, data.pos, data.batch, **extra).view(-1)

    def mae(m, loader) -> float:
        m.eval()
        with torch.no_grad():
            errors = [(call(m, d).double() - d.y[:, prep.t_index].double()).abs()
                      for d in loader]
        m.train()
        return float(torch.cat(errors).mean())

    opt = torch.optim.Adam(model.parameters() if param_groups is None else param_groups,
                           lr=lr, amsgrad=amsgrad)
    averaged = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema)) if ema else None)
    evaluated = averaged.module if averaged is not None else model
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=patience)
    shuffle = torch.Generator().manual_seed(seed)
    loader = {key: DataLoader(prep.dataset[idx], batch_size=batch_size,
                              shuffle=key == "train", generator=shuffle)
              for key, idx in prep.split.items()}
    best, best_state, epochs, start = float("inf"), None, 0, time.perf_counter()
    test = float("nan")
    while time.perf_counter() - start < 60 * minutes:
        train_sum, train_count = 0.0, 0
        for data in loader["train"]:
            opt.zero_grad()
            error = (call(model, data) - data.y[:, prep.t_index]).abs()
            (error.mean() / prep.std).backward()
            opt.step()
            # Summed where the model runs: one host read per epoch, not per step.
            train_sum = train_sum + error.detach().double().sum()
            train_count += error.numel()
            if averaged is not None:
                averaged.update_parameters(model)
            if time.perf_counter() - start >= 60 * minutes:
                break
        epochs += 1
        val = mae(evaluated, loader["val"])
        plateau.step(val)
        if val < best:
            best, best_state = val, copy.deepcopy(evaluated.state_dict())
            if curve is not None:
                paused = time.perf_counter()
                test = mae(evaluated, loader["test"])
                start += time.perf_counter() - paused
        if curve is not None:
            curve.append({"epoch": epochs, "seconds": time.perf_counter() - start,
                          "train_mae": float(train_sum) / max(train_count, 1), "val_mae": val,
                          "test_mae": test})
    evaluated.load_state_dict(best_state)
    return mae(evaluated, loader["test"]), best, epochs


def save_results(out: str, args, rows: list, lines: List[str], key: str = "rows") -> None:
    """Prints the table :obj:`lines` and writes ``out.json`` (the machine,
    the arguments and :obj:`rows`, under :obj:`key`) and ``out.md`` (the
    table)."""
    import json

    print("\n".join(lines))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump({"machine": machine(), "args": vars(args), key: rows}, f, indent=2)
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
