"""Data-parallel training: 2 CPU processes with the gloo backend on localhost."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from neuralgraph.inr import build_inr_splits
from neuralgraph.train import TrainConfig, load_checkpoint, train
from neuralgraph.train.distributed import DistInfo, eval_shard, shard_indices

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_inrs")
    build_inr_splits("digits", out, n_train=192, n_val=64, n_test=64, steps=60, progress=False)
    return out


# ----------------------------------------------------------------------------
# sharding
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("n,world", [(10, 1), (10, 2), (11, 2), (7, 3), (2, 4), (1000, 7)])
def test_shards_cover_and_match_single_process_batches(n, world):
    shards = [shard_indices(n, DistInfo(rank=r, world_size=world), seed=5, epoch=3) for r in range(world)]
    assert len({len(s) for s in shards}) == 1                        # same number of steps on every rank
    allidx = torch.cat(shards)
    assert set(allidx.tolist()) == set(range(n))                     # every sample seen
    assert len(allidx) - n < world                                   # padding only to the next multiple
    single = shard_indices(n, DistInfo(), seed=5, epoch=3)
    # rank r's k-th index is the (k*world + r)-th of the single-process order (before padding)
    inter = torch.stack(shards, 1).reshape(-1)[:n]
    assert torch.equal(inter, single)
    assert not torch.equal(single, shard_indices(n, DistInfo(), seed=5, epoch=4)) or n < 3
    ev = [eval_shard(n, DistInfo(rank=r, world_size=world)) for r in range(world)]
    assert sorted(torch.cat(ev).tolist()) == list(range(n))          # evaluation: exact cover, no padding


# ----------------------------------------------------------------------------
# two gloo processes
# ----------------------------------------------------------------------------

def _config(data: str, out: str, batch_size: int) -> TrainConfig:
    return TrainConfig(data=data, out=out, model="mlp", epochs=2, batch_size=batch_size, lr=2e-3, seed=0,
                       model_kwargs={"hidden": (64, 64)})


def _worker(rank: int, world: int, port: int, data: str, out: str, dump: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    res = train(_config(data, out, 16), progress=False, verbose=False)
    torch.save({"history": res.history, "test_acc": res.test_acc, "params": res.classifier.state_dict()},
               Path(dump) / f"rank{rank}.pt")


def test_two_process_gloo_training_matches_single_process(data, tmp_path):
    world, port = 2, free_port()
    dump = tmp_path / "dump"
    dump.mkdir()
    mp.spawn(_worker, args=(world, port, str(data), str(tmp_path / "ddp"), str(dump)), nprocs=world, join=True)
    r0, r1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    # both replicas end with identical parameters, and global (all-reduced) metrics
    assert r0["params"].keys() == r1["params"].keys()
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    wall = lambda h: [{k: v for k, v in r.items() if k not in ("time", "data_s", "step_s")} for r in h]  # per rank
    assert wall(r0["history"]) == wall(r1["history"]) and r0["test_acc"] == r1["test_acc"]
    # rank 0 alone wrote the run directory
    run = tmp_path / "ddp"
    ck = load_checkpoint(run / "last.pt")
    assert ck["world_size"] == 2 and ck["epoch"] == 2 and len(ck["rng"]) == 2
    best = load_checkpoint(run / "best.pt")["model"]
    assert all(torch.equal(best[k], r0["params"][k]) for k in best)
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert json.loads((run / "results.json").read_text())["world_size"] == 2
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    # 2 processes x batch 16 see exactly the batches of 1 process x batch 32: same training up to rounding
    torch.set_num_threads(1)
    single = train(_config(str(data), str(tmp_path / "single"), 32), progress=False, verbose=False)
    for k, v in single.classifier.state_dict().items():
        torch.testing.assert_close(r0["params"][k], v, atol=2e-5, rtol=1e-4)
    for a, b in zip(single.history, r0["history"]):
        assert a["val_acc"] == b["val_acc"] and a["train_acc"] == b["train_acc"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
