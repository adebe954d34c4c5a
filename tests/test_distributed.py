"""Data-parallel training (acn_pyg.train.distributed): processes spawned
here with the gloo backend on the CPU, as torchrun would start them."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from acn_pyg.datasets import QM9
from acn_pyg.train import Config, TrainState, prepare, train
from acn_pyg.train import distributed
from acn_pyg.train.data import make_loaders
from acn_pyg.train.experiment import _setup, _trainer


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


def tiny(source_dir, tmp_path, out="run", **kwargs):
    """A tiny QM9 run. Its time budget (an hour) never binds: the schedule
    follows the epochs, and the clock is agreed over the ranks every step."""
    values = dict(train_size=20, val_size=7, test_size=5, epochs=3, batch_size=4,
                  hidden_channels=8, num_layers=1, time_budget=60.0, ema=0.9, device="cpu",
                  threads=1, root=str(tmp_path / "qm9"), data_source=source_dir,
                  out=str(tmp_path / out), plot=False)
    values.update(kwargs)
    QM9(values["root"], source_dir=source_dir)  # processed once, before the processes read it
    os.makedirs(values["out"], exist_ok=True)
    return Config(**values)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def spawn(fn, world: int, *args) -> None:
    mp.spawn(fn, args=(world, _free_port(), *args), nprocs=world)


def _train_worker(rank, world, port, cfg, out):
    """The training loop on one rank; saves this replica's weights."""
    _join(rank, world, port)
    device = _setup(cfg, distributed.setup(cfg.device))
    prep = prepare(cfg)
    tr = _trainer(cfg, prep, device)
    loaders, rng = make_loaders(cfg, prep, device)
    train(tr, loaders, device, TrainState(), cfg, rng)
    torch.save({"model": tr.model.state_dict(), "ema": tr.ema.module.state_dict()},
               os.path.join(out, f"rank{rank}.pt"))
    distributed.teardown()


def _run_worker(rank, world, port, cfg, die_after_saves=None):
    """``acn-pyg train``'s run on one rank; rank 0 dies after its
    :obj:`die_after_saves`-th ``last.pt`` when given."""
    _join(rank, world, port)
    if die_after_saves is not None and rank == 0:
        import acn_pyg.train.loop as loop
        real, saved = loop.save_last, []

        def save_then_die(*a, **k):
            real(*a, **k)
            saved.append(1)
            if len(saved) == die_after_saves:
                raise KeyboardInterrupt
        loop.save_last = save_then_die
    from acn_pyg.train import run
    run(cfg)


def test_the_sampler_shards_the_global_batches_of_one_process():
    num = 23  # global batches of 8: 8, 8 and 7

    def generator():
        return torch.Generator().manual_seed(5)
    random = torch.utils.data.RandomSampler(range(num), generator=generator())
    expected = [list(torch.utils.data.BatchSampler(random, 8, False)) for _ in range(2)]
    # One process: the batches of a RandomSampler with the same generator, every epoch.
    one = distributed.ShardedBatchSampler(num, 8, generator())
    assert [list(one) for _ in range(2)] == expected
    # Two ranks: equal halves of the same global batches; the last keeps 6 of its 7.
    ranks = [distributed.ShardedBatchSampler(num, 4, generator(), r, 2) for r in (0, 1)]
    for epoch in range(2):
        a, b = list(ranks[0]), list(ranks[1])
        assert [len(x) for x in a] == [len(x) for x in b] == [4, 4, 3]
        glued = [x + y for x, y in zip(a, b)]
        assert glued[:2] == expected[epoch][:2] and glued[2] == expected[epoch][2][:6]
    assert len(ranks[0]) == 3 and ranks[0].left_out() == 1
    with pytest.raises(ValueError, match="3 training structures cannot be shared by 4"):
        distributed.ShardedBatchSampler(3, 1, torch.Generator(), 0, 4)


def test_replicas_stay_equal_and_equal_one_process_with_the_global_batch(source_dir, tmp_path):
    cfg = tiny(source_dir, tmp_path, batch_size=4)
    spawn(_train_worker, 2, cfg, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    # The same run in this process, with the global batch (2 x 4).
    one = tiny(source_dir, tmp_path, out="one", batch_size=8)
    device = _setup(one)
    prep = prepare(one)
    tr = _trainer(one, prep, device)
    loaders, rng = make_loaders(one, prep, device)
    train(tr, loaders, device, TrainState(), one, rng)
    start = _trainer(one, prep, device).model.state_dict()
    for key, value in tr.model.state_dict().items():
        assert torch.equal(ranks[0]["model"][key], ranks[1]["model"][key]), key
        assert torch.equal(ranks[0]["ema"][key], ranks[1]["ema"][key]), key
        torch.testing.assert_close(ranks[0]["model"][key], value, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ranks[0]["ema"][key], tr.ema.module.state_dict()[key],
                                   rtol=1e-4, atol=1e-5)
    # It trained: the weights moved from their start.
    assert any(not torch.allclose(start[k], v) for k, v in tr.model.state_dict().items()
               if v.is_floating_point())


def test_a_distributed_run_reports_one_process_metrics_and_resumes(source_dir, tmp_path):
    cfg = tiny(source_dir, tmp_path, out="two", epochs=4)
    spawn(_run_worker, 2, cfg)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    from acn_pyg.train import run
    one = run(tiny(source_dir, tmp_path, out="one", epochs=4, batch_size=8))
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["sizes"] == one["sizes"] and two["steps"] == one["steps"] == 4 * 3
    for key in ("val_mae", "train_loss"):
        assert [h[key] for h in two["history"]] == pytest.approx(
            [h[key] for h in one["history"]], rel=1e-4)
    for key in ("test_mae", "train_mae", "best_val_mae"):
        assert two[key] == pytest.approx(one[key], rel=1e-4)

    # Killed after its second epoch under two processes, then resumed by two.
    cut = tiny(source_dir, tmp_path, out="cut", epochs=4)
    with pytest.raises((mp.ProcessRaisedException, mp.ProcessExitedException)):
        spawn(_run_worker, 2, cut, 2)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    cut.resume = True
    spawn(_run_worker, 2, cut)
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    for key in ("epoch", "train_loss", "val_mae"):
        assert [h[key] for h in resumed["history"]] == pytest.approx(
            [h[key] for h in two["history"]], rel=1e-6)
    assert resumed["test_mae"] == pytest.approx(two["test_mae"], rel=1e-6)

    # One process cannot resume what two trained: the global batch would change.
    with pytest.raises(ValueError, match="trained by 2 process"):
        run(cut)


def test_bad_distributed_settings_are_refused(source_dir, tmp_path, monkeypatch):
    import torch.distributed as dist
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 4)
    monkeypatch.setattr(dist, "get_rank", lambda *a: 0)
    with pytest.raises(ValueError, match="--test-size 3 is smaller than the 4 processes"):
        distributed.check_config(tiny(source_dir, tmp_path, test_size=3))
    with pytest.raises(ValueError, match="--denoise-weight"):
        distributed.check_config(tiny(source_dir, tmp_path, denoise_weight=0.1))
    monkeypatch.undo()
    for key in distributed.ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RANK", "0")
    assert not distributed.requested()  # torchrun sets all four
    with pytest.raises(ValueError, match="needs the environment variable WORLD_SIZE"):
        distributed.setup("cpu")


def test_forces_train_under_two_processes(tmp_path):
    """Energies and forces (a double backward through the replica) from a
    structure file kept on disk, under two processes."""
    from test_train_files import write_frames

    path = write_frames(tmp_path / "lj.xyz", count=24)
    cfg = Config(data=path, on_disk=True, train_size=12, val_size=6, test_size=6, epochs=2,
                 batch_size=3, hidden_channels=8, num_layers=1, time_budget=60.0, ema=0.0,
                 device="cpu", threads=1, out=str(tmp_path / "run"), plot=False)
    spawn(_run_worker, 2, cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2 * 2
    assert metrics["sizes"] == {"train": 12, "val": 6, "test": 6}
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in
               ("test_energy_mae", "test_forces_mae", "train_forces_mae"))
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "last.pt").exists()
