r"""Data-parallel training on :mod:`torch.distributed`: one process per
device, each with a replica of the model (:class:`DistributedDataParallel`)
and a shard of every global batch.

A run is distributed when it is started by ``torchrun`` (or anything that
sets :obj:`RANK`, :obj:`WORLD_SIZE`, :obj:`MASTER_ADDR`, :obj:`MASTER_PORT`
and, per node, :obj:`LOCAL_RANK`), also with one process: a check of the
backend and the sampler. The backend is ``nccl`` on CUDA and ``gloo`` on
the CPU; small control messages (the agreed time, gathered predictions) go
through a ``gloo`` group.

Semantics: :obj:`--batch-size` is per process, so a step sees
:math:`B \times W` structures (:math:`W` processes) and the gradient is
their mean, as in one process with batch :math:`B \times W`. Every epoch
draws one permutation of the training set (the same on every rank) and
cuts it into global batches of :math:`B \times W`, each split into
:math:`W` equal shards; the last global batch of an epoch keeps
:math:`W \lfloor m / W \rfloor` of its :math:`m` structures (the other
:math:`m \bmod W < W` are left out of that epoch only, different ones each
epoch). Losses that are means over structures are then exactly those of
one process; means over atoms (forces, charges) are taken over each rank's
atoms and averaged over the ranks, which weighs the atoms of a step
slightly differently, as in MACE's and Lightning's data parallelism.
Validation and test predictions are computed on contiguous shards and
gathered in order, so every metric is that of one process. Rank 0 reads
and writes the run's files and sends what it read to the others, so the
nodes need no shared disk.
"""
import os
import warnings
from datetime import timedelta
from typing import Any, Iterator, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor

_CONTROL = None  # the gloo group of control messages
_OWNED = False  # whether setup() made the process group


#: The environment variables of a distributed run (torchrun sets them).
ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def requested() -> bool:
    """Whether the environment asks for a distributed run (torchrun's
    variables are set)."""
    return all(key in os.environ for key in ENV)


def is_distributed() -> bool:
    """Whether this process is one of a distributed run's."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (the environment's before and after the run's
    process group; 0 in a run of one process)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ["RANK"]) if requested() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes the run's files and prints (rank 0)."""
    return rank() == 0


def setup(device: str) -> torch.device:
    """Joins the run's process group (``nccl`` on CUDA, ``gloo`` on the CPU)
    and returns this process's device: ``cuda:LOCAL_RANK`` on CUDA.
    :obj:`device` is the run's :obj:`--device` (``auto``, ``cpu`` or
    ``cuda``)."""
    global _CONTROL, _OWNED
    for key in ENV:
        if key not in os.environ:
            raise ValueError(f"a distributed run needs the environment variable {key} (start "
                             "it with torchrun, which sets it)")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} "
                             "CUDA device(s): start at most that many processes per node")
        torch.cuda.set_device(local)
        here = torch.device("cuda", local)
    else:
        here = torch.device("cpu")
    if not is_distributed():
        backend = "nccl" if cuda else "gloo"
        kwargs = {"device_id": here} if cuda else {}
        dist.init_process_group(backend, timeout=timedelta(minutes=30), **kwargs)
        _OWNED = True
    if _CONTROL is None:
        _CONTROL = (dist.new_group(backend="gloo") if dist.get_backend() != "gloo"
                    else dist.group.WORLD)
    return here


def teardown(wait: bool = True) -> None:
    """Leaves the process group that :func:`setup` joined, after every rank
    got there when :obj:`wait` (after an error, at once); a group the caller
    made stays."""
    global _CONTROL, _OWNED
    if is_distributed() and _OWNED:
        if wait:
            dist.barrier(group=_CONTROL)
        dist.destroy_process_group()
        _CONTROL, _OWNED = None, False


def check_config(cfg) -> None:
    """Raises a :class:`ValueError` naming the flag that a distributed run
    of :obj:`cfg` (a :class:`~acn_pyg.train.Config`) cannot use."""
    if cfg.denoise_weight > 0:
        raise ValueError("--denoise-weight is not supported in a distributed run yet (its "
                         "head is outside the replicated model); train without it")
    w = world_size()
    for name in ("train_size", "val_size", "test_size"):
        if getattr(cfg, name) < w:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(cfg, name)} is smaller than "
                             f"the {w} processes: each needs at least one structure")


def barrier() -> None:
    if is_distributed():
        dist.barrier(group=_CONTROL)


def agree(value: float) -> float:
    """Rank 0's :obj:`value` on every rank (the identity in one process):
    decisions taken from the clock, such as the learning rate's progress
    and the end of a timed run, must be the same on every replica."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, 0, group=_CONTROL)
    return float(t)


def total(count: int) -> int:
    """The sum of :obj:`count` over the ranks (a shard's size: the whole)."""
    if not is_distributed():
        return count
    t = torch.tensor([count], dtype=torch.int64)
    dist.all_reduce(t, group=_CONTROL)
    return int(t)


def all_sum(values: Tensor) -> Tensor:
    """:obj:`values` summed over the ranks, on their device (the run's
    backend: no copy to the host)."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values


def broadcast_object(obj: Any) -> Any:
    """Rank 0's :obj:`obj` (any picklable object) on every rank: a
    checkpoint read by rank 0 alone, so the ranks need no shared disk."""
    if not is_distributed():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, 0, group=_CONTROL)
    return box[0]


def gather(values: Tensor) -> Tensor:
    """The rows of :obj:`values` (a CPU tensor) of every rank, concatenated
    in rank order (the identity in one process); the ranks may hold
    different numbers of rows."""
    if not is_distributed():
        return values
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(world_size())]
    dist.all_gather(counts, torch.tensor([values.size(0)]), group=_CONTROL)
    most = max(int(c) for c in counts)
    padded = values.new_zeros((most,) + tuple(values.shape[1:]))
    padded[:values.size(0)] = values
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous(), group=_CONTROL)
    return torch.cat([p[:int(c)] for p, c in zip(parts, counts)])


def shard(indices: Tensor) -> Tensor:
    """This rank's contiguous block of :obj:`indices` (evaluation): the
    blocks of ranks 0, 1, ... concatenated are :obj:`indices`."""
    w, r = world_size(), rank()
    bounds = [len(indices) * k // w for k in range(w + 1)]
    return indices[bounds[r]:bounds[r + 1]]


class ShardedBatchSampler(torch.utils.data.Sampler):
    r"""Batches of a shuffled training set for one rank of :obj:`world_size`:
    each epoch draws :obj:`torch.randperm(num, generator)` (the same on
    every rank, and in one process the permutation of a
    :class:`~torch.utils.data.RandomSampler` with the same generator), cuts
    it into global batches of :obj:`batch_size` :math:`\times`
    :obj:`world_size` and yields this rank's equal shard of each. The last
    global batch keeps a multiple of :obj:`world_size` structures.

    Args:
        num (int): Number of training structures.
        batch_size (int): Structures per rank and step.
        generator (torch.Generator): Draws the permutations.
        rank (int, optional): This rank. (default: :obj:`0`)
        world_size (int, optional): Number of ranks. (default: :obj:`1`)
    """

    def __init__(self, num: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                 world_size: int = 1):
        if num < world_size:
            raise ValueError(f"{num} training structures cannot be shared by {world_size} "
                             "processes: use more structures or fewer processes")
        self.num, self.batch_size, self.generator = num, batch_size, generator
        self.rank, self.world_size = rank, world_size

    def _shard_sizes(self) -> List[int]:
        full, rest = divmod(self.num, self.batch_size * self.world_size)
        sizes = [self.batch_size] * full
        if rest >= self.world_size:
            sizes.append(rest // self.world_size)
        return sizes

    def __len__(self) -> int:
        return len(self._shard_sizes())

    def left_out(self) -> int:
        """Structures left out of each epoch (fewer than :obj:`world_size`)."""
        return self.num - self.world_size * sum(self._shard_sizes())

    def __iter__(self) -> Iterator[List[int]]:
        perm = torch.randperm(self.num, generator=self.generator)
        # RandomSampler draws a second, empty-sliced permutation each epoch:
        # drawn too, so one process shuffles exactly as it does.
        torch.randperm(self.num, generator=self.generator)
        start = 0
        for size in self._shard_sizes():
            first = start + self.rank * size
            yield perm[first:first + size].tolist()
            start += size * self.world_size


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """:obj:`model` in :class:`~torch.nn.parallel.DistributedDataParallel`
    (the identity in one process); the replicas start from rank 0's
    weights. The models' buffers are constants (Clebsch-Gordan
    coefficients, atom references), so they are not sent every step."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel
    import inspect

    ids = [device.index] if device.type == "cuda" else None
    buffers = ("forward_sync_buffers" if "forward_sync_buffers"
               in inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers")
    # Gradients live in the communication buckets. Double backward (forces)
    # gives the [1, k] weight of the output layer a gradient of strides
    # [1, 1], which DDP copies into its bucket with a warning: for a
    # dimension of size 1 the strides are immaterial.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True,
                                   **{buffers: False})


def load_on_main(path: str, load) -> Optional[Any]:
    """:obj:`load(path)` read by rank 0 and sent to every rank (:obj:`None`
    when rank 0 has no file at :obj:`path`)."""
    obj = load(path) if is_main() and os.path.exists(path) else None
    return broadcast_object(obj)
