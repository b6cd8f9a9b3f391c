"""Damaged files are refused, never used: checkpoint and ``ng.save`` checksums (flipped bytes in tensor data
or in the pickled entries), and files written without checksums still load."""
from __future__ import annotations

import io
import zipfile

import pytest
import torch
from torch import nn

import neuralgraph as ng
from bad_input import overwrite_tensor_bytes
from neuralgraph.inr import build_inr_splits
from neuralgraph.inr.files import load_inr_file
from neuralgraph.io import atomic_save, checksums, tensor_sha256
from neuralgraph.train import TrainConfig, load_checkpoint, load_trained, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch MLP run on 60 / 20 / 20 digit INRs."""
    root = tmp_path_factory.mktemp("integrity")
    build_inr_splits("digits", root / "data", n_train=60, n_val=20, n_test=20, steps=20, progress=False)
    cfg = TrainConfig(data=str(root / "data"), out=str(root / "run"), model="mlp", epochs=1, batch_size=32,
                      model_kwargs={"hidden": (32,)})
    res = train(cfg, progress=False, verbose=False)
    return res.run_dir


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def _rewrite_member(path, member: str, change) -> None:
    """Rewrite the zip ``path`` with ``change(bytes)`` applied to ``member`` (CRCs made to match again)."""
    with zipfile.ZipFile(path) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in items:
            z.writestr(info, change(data) if info.filename.endswith(member) else data)


def test_checkpoints_carry_checksums_of_every_tensor(run):
    ck = load_checkpoint(run / "best.pt")
    names = set(ck["checksums"]["sha256"])
    assert {f"model/{k}" for k in ck["model"]} <= names
    assert any(n.startswith("optimizer/state/") for n in names) and "rng/0/torch" in names
    assert ck["checksums"] == checksums(ck)


def test_a_weight_overwritten_in_a_checkpoint_is_refused_naming_file_and_tensor(run, tmp_path):
    path = overwrite_tensor_bytes(_copy(run / "best.pt", tmp_path / "best.pt"))
    raw = torch.load(path, weights_only=True)                # torch itself loads it without a word
    good = torch.load(run / "best.pt", weights_only=True)
    changed = [k for k in good["model"] if not torch.equal(good["model"][k], raw["model"][k])]
    assert len(changed) == 1
    with pytest.raises(ValueError, match=rf"best.pt: checksum mismatch in model/{changed[0]}: the file is corrupted"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_trained(path)


def test_a_changed_setting_in_the_pickled_entries_is_refused(run, tmp_path):
    """A changed byte outside tensor data (the model name in data.pkl) is caught by the structure digest."""
    path = _copy(run / "best.pt", tmp_path / "best.pt")
    _rewrite_member(path, "data.pkl", lambda b: b.replace(b"mlp", b"mlq", 1))
    assert torch.load(path, weights_only=True)["config"]["model"] == "mlq"
    with pytest.raises(ValueError, match="checksum mismatch in the non-tensor entries"):
        load_checkpoint(path)


def test_checkpoints_written_without_checksums_still_load(run, tmp_path):
    old = {k: v for k, v in torch.load(run / "best.pt", weights_only=True).items() if k != "checksums"}
    atomic_save(old, tmp_path / "best.pt")                   # as checkpoints were written before checksums
    ck = load_checkpoint(tmp_path / "best.pt")
    assert "checksums" not in ck and ck["epoch"] == old["epoch"]
    model, _ = load_trained(tmp_path / "best.pt")
    assert isinstance(model, nn.Module)


def _graphs():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return ng.to_graph(mlp), ng.batch_models([mlp, cnn])


@pytest.mark.parametrize("which", ["graph", "batch"])
def test_ng_save_round_trip_and_plain_torch_load(tmp_path, which):
    graph, batch = _graphs()
    obj = graph if which == "graph" else batch
    path = ng.save(obj, tmp_path / "g.pt")
    back = ng.load(path)
    assert type(back) is type(obj) and torch.equal(back.edge_attr, obj.edge_attr) and back.arch == obj.arch
    if which == "batch":
        assert back.num_graphs == 2 and torch.equal(back.get_example(1).x, obj.get_example(1).x)
    raw = torch.load(path)                                   # weights_only=True, torch's default
    assert raw["format"] == ng.io.SAVED_FORMAT and torch.equal(raw["object"].x, obj.x)


def test_ng_load_detects_a_flipped_byte_and_reads_plain_files(tmp_path):
    graph, batch = _graphs()
    torch.save(batch, tmp_path / "plain.pt")                 # no checksums: loaded as it is
    assert torch.equal(ng.load(tmp_path / "plain.pt").x, batch.x)
    ng.save(batch, tmp_path / "b.pt")
    with pytest.raises(ValueError, match=r"b.pt: checksum mismatch in object/"):
        ng.load(overwrite_tensor_bytes(tmp_path / "b.pt", count=1))
    with pytest.raises(FileNotFoundError, match="file not found"):
        ng.load(tmp_path / "none.pt")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        ng.save(graph, tmp_path)


def test_tensor_sha256_reads_any_dtype_and_layout():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert tensor_sha256(t.t()) == tensor_sha256(t.t().contiguous())
    assert tensor_sha256(t.bfloat16()) != tensor_sha256(t.half())
    assert tensor_sha256(torch.tensor(1.0)) == tensor_sha256(torch.tensor([1.0]))
    buf = io.BytesIO()
    torch.save(t, buf)
    assert tensor_sha256(torch.load(io.BytesIO(buf.getvalue()))) == tensor_sha256(t)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")     # torch's warning for a flipped PROTO byte
def test_ng_load_never_hands_back_a_damaged_record(tmp_path):
    """One bit flipped anywhere in the pickled record (its keys, the format string, the opcodes that build the
    dict) or in a tensor: ng.load raises ValueError or returns the graph as saved, never a renamed dict or a tuple
    of the record's entries as if it were a plain file. Every byte of the record's head and tail (where the keys,
    the format string and the dict's closing opcode are) and every 11th byte between them and in the tensors."""
    graph = ng.to_graph(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    raw = ng.save(graph, tmp_path / "g.pt").read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        pkl = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
    start = pkl.header_offset + 30 + len(pkl.filename) + len(pkl.extra)
    end = start + pkl.compress_size
    positions = sorted({*range(start, start + 160), *range(end - 48, end), *range(start, len(raw), 11)})
    damaged = tmp_path / "d.pt"
    for pos in positions:
        data = bytearray(raw)
        data[pos] ^= 0x01
        damaged.write_bytes(bytes(data))
        try:
            back = ng.load(damaged)
        except ValueError:
            continue
        assert type(back) is type(graph) and set(back.keys()) == set(graph.keys()), pos
        assert all(torch.equal(back[k], graph[k]) if torch.is_tensor(graph[k]) else back[k] == graph[k]
                   for k in graph.keys()), pos


def test_inr_files_catch_a_changed_architecture_or_setting_and_name_the_entry(run, tmp_path):
    """A changed byte in an INR split's pickled entries (the activation, the source) is refused by entry;
    a file written before the entries had digests still loads, verified by its tensors."""
    data = run.parent / "data"
    assert set(load_inr_file(data / "val.pt")["checksums"]["structure"]) >= {"arch", "meta", "stats", "weights"}
    for old, new, entry in ((b"sine", b"tanh", "arch"), (b"digits", b"digitz", "meta")):
        path = _copy(data / "val.pt", tmp_path / f"{entry}.pt")
        _rewrite_member(path, "data.pkl", lambda b, old=old, new=new: b.replace(old, new, 1))
        assert new.decode() in repr(torch.load(path, weights_only=True)[entry])    # torch reads the change
        with pytest.raises(ValueError, match=rf"{entry}.pt: checksum mismatch in {entry} \(its non-tensor content\)"):
            load_inr_file(path)
    before = torch.load(data / "val.pt", weights_only=True)
    before["checksums"] = {"sha256": before["checksums"]["sha256"]}
    atomic_save(before, tmp_path / "before.pt")
    assert torch.equal(load_inr_file(tmp_path / "before.pt")["weights"][0], before["weights"][0])


def test_zoo_files_catch_a_changed_setting_and_name_the_entry(tmp_path):
    from neuralgraph.zoo import generate_zoo, load_zoo_file

    path = generate_zoo(tmp_path / "z.pt", family="mlp", num_networks=2, epochs=1, hidden_choices=((8,),),
                        dataset="digits", image_size=8, n_train=64, n_test=50, n_train_eval=32, progress=False)
    assert set(load_zoo_file(path)["checksums"]["structure"]) >= {"archs", "hparams", "meta"}
    _rewrite_member(path, "data.pkl", lambda b: b.replace(b"digits", b"digitz", 1))
    with pytest.raises(ValueError, match=r"z.pt: checksum mismatch in meta \(its non-tensor content\)"):
        load_zoo_file(path)
