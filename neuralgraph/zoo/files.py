"""Zoo files: generating a zoo (resumable, in chunks) and loading it as PyG batches of neural graphs.

A zoo file is ``torch.save`` of a dict::

    format_version  int (ZOO_FORMAT)
    family          "small_cnn" | "wild_park" | "mlp"
    archs           [Architecture.to_dict()]           the architectures of the zoo
    groups          [{"arch": a, "index": [n_g] network ids,
                      "weights": [W_m [n_g, C, out, in, *k]], "biases": [b_m [n_g, C, out] or None],
                      "norms": [[n_g, C, out, 4] or None]}]   parameters at the C checkpoints
    hparams         [dict] per network (see specs.sample_zoo; "arch" indexes archs)
    epochs          [C] int64, the checkpoint epochs (0 = initialisation)
    metrics         {"train_loss", "train_acc", "test_loss", "test_acc": [n, C] float32}
    meta            settings (data set, image size, sizes, seed, ...) and fingerprint
    checksums       {"sha256": {tensor name: hex digest}, "structure": {entry: hex digest}} (the second:
                    neuralgraph.io.entry_structures, absent from files written before it; not checked there)

Networks are numbered ``0..n-1``; a group holds the networks of one
architecture (mixed architectures in one file). Train metrics are measured in
eval mode on the first ``n_train_eval`` training images (the same images for
every network, whatever its training subset), test metrics on the test split.

Data: :func:`~neuralgraph.data.images.load_zoo_data` (MNIST / Fashion-MNIST downsampled, or sklearn's
digits), re-exported here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ..architecture import Architecture
from ..batching import concat_batches, set_graph_attr
from ..chunks import ChunkStore, fingerprint, tensor_digest
from ..data.images import DATASETS, load_zoo_data
from ..datasets import as_index
from ..deprecation import warn_renamed
from ..graph import stacked_to_batch, to_model
from ..seeding import derive_seed
from ..io import (atomic_save, compact_tensor, entry_structures, lock_directory, mismatched_digests, read_torch_file,
                  some_names, tensor_sha256, verify_entry_structures)
from .settings import ZooSettings
from .specs import sample_zoo
from .train import check_trainable, train_group

__all__ = ["ZOO_FORMAT", "DATASETS", "load_zoo_data", "generate_zoo", "write_zoo", "load_zoo_file", "ZooDataset",
           "concat_batches", "METRICS"]

ZOO_FORMAT = 1
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
_KEYS = ("format_version", "family", "archs", "groups", "hparams", "epochs", "metrics", "meta", "checksums")
_GROUP_KEYS = ("arch", "index", "weights", "biases", "norms")


# ----------------------------------------------------------------------------
# checksums and validation
# ----------------------------------------------------------------------------

def _named_tensors(obj: dict) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for g, group in enumerate(obj["groups"]):
        out[f"groups.{g}.index"] = group["index"]
        for key in ("weights", "biases", "norms"):
            for m, t in enumerate(group[key]):
                if t is not None:
                    out[f"groups.{g}.{key}.{m}"] = t
    for key, t in obj.get("metrics", {}).items():
        out[f"metrics.{key}"] = t
    if "epochs" in obj:
        out["epochs"] = obj["epochs"]
    return out


def _checksums(obj: dict) -> dict:
    return {"sha256": {k: tensor_sha256(t) for k, t in _named_tensors(obj).items()}}


def load_zoo_file(path: str | os.PathLike, verify: bool = True) -> dict:
    """Load and validate a zoo file (``ValueError`` naming the file if it is not a valid one).

    Checks the format version, keys, architectures, that every network is in
    exactly one group, tensor shapes (networks x checkpoints x layer shape)
    and, with ``verify``, the sha256 of every tensor.
    """
    path = Path(path)
    obj = read_torch_file(path, "cpu", "zoo file", "zoo file")
    if not isinstance(obj, dict) or any(k not in obj for k in _KEYS):
        missing = [k for k in _KEYS if not isinstance(obj, dict) or k not in obj]
        raise ValueError(f"{path}: not a zoo file (missing {missing})")
    if obj["format_version"] != ZOO_FORMAT:
        raise ValueError(f"{path}: zoo format_version {obj['format_version']}, this code reads {ZOO_FORMAT}")
    if verify:
        verify_entry_structures(obj, path, hint="generate it again")    # before reading entries it could misname
    try:
        archs = [Architecture.from_dict(a) for a in obj["archs"]]
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: unreadable architecture ({type(e).__name__}: {e})") from None
    n, C = len(obj["hparams"]), int(obj["epochs"].numel())
    seen = torch.zeros(n, dtype=torch.long)
    for g, group in enumerate(obj["groups"]):
        lacking = [k for k in _GROUP_KEYS if not isinstance(group, dict) or k not in group]
        if lacking:
            raise ValueError(f"{path}: group {g} lacks {lacking}: not a valid zoo file")
        a = group["arch"]
        if not isinstance(a, int) or not 0 <= a < len(archs):
            raise ValueError(f"{path}: group {g} names architecture {a!r}, the file has {len(archs)}")
        idx = group["index"]
        if idx.dtype != torch.long or idx.dim() != 1 or (idx.numel() and (idx.min() < 0 or idx.max() >= n)):
            raise ValueError(f"{path}: group {g} index must be int64 network ids in [0, {n})")
        seen.index_add_(0, idx, torch.ones_like(idx))
        arch, B = archs[a], idx.numel()
        for m, layer in enumerate(arch.layers):
            shapes = {"weights": (B, C, *layer.weight_shape),
                      "biases": (B, C, layer.out_features) if layer.bias else None,
                      "norms": (B, C, layer.out_features, 4) if layer.norm is not None else None}
            for key, want in shapes.items():
                t = group[key][m] if m < len(group[key]) else "missing"
                got = None if t is None else tuple(t.shape) if isinstance(t, Tensor) else t
                if got != want:
                    raise ValueError(f"{path}: group {g} {key}[{m}] has shape {got}, expected {want}")
    if not bool((seen == 1).all()):
        raise ValueError(f"{path}: every network must be in exactly one group "
                         f"({int((seen == 0).sum())} in none, {int((seen > 1).sum())} in several)")
    for key in METRICS:
        t = obj["metrics"].get(key)
        if not isinstance(t, Tensor) or tuple(t.shape) != (n, C):
            raise ValueError(f"{path}: metrics[{key!r}] must have shape ({n}, {C})")
    if verify:
        bad = mismatched_digests(obj["checksums"], _checksums(obj)["sha256"])
        if bad:
            raise ValueError(f"{path}: checksum mismatch in {some_names(bad)}: the file is corrupted")
    obj["archs"] = archs
    return obj


# ----------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------

def _valid_chunk(start: int, stop: int):
    """A trained chunk holds exactly the networks ``start..stop-1`` (besides the store's checks)."""
    return lambda obj: sorted(i for g in obj["groups"] for i in g["index"].tolist()) == list(range(start, stop))


def generate_zoo(
    out_path: str | os.PathLike,
    *,
    family: str = "small_cnn",
    dataset: str = "mnist",
    root: str | os.PathLike | None = None,
    num_networks: int = 300,
    epochs: int = 3,
    checkpoints: Sequence[int] | None = None,
    image_size: int = 14,
    n_train: int | None = 10000,
    n_test: int | None = 2000,
    n_train_eval: int = 2000,
    batch_size: int = 32,
    seed: int = 0,
    chunk_size: int = 128,
    num_architectures: int = 8,
    hidden_choices: Sequence[Sequence[int]] = ((32,), (32, 32)),
    device: str | torch.device = "cpu",
    resume: bool = True,
    overwrite: bool = False,
    keep_chunks: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Path:
    """Train a zoo of ``num_networks`` classifiers and write it to ``out_path``; resumable.

    Networks ``[k * chunk_size, (k + 1) * chunk_size)`` form chunk ``k``; within
    a chunk the networks of each architecture train together
    (:func:`~neuralgraph.zoo.train.train_group`). Each finished chunk is saved
    atomically as ``<out_path>.chunks/chunk_XXXXX.pt`` with the fingerprint of
    the settings and data; a rerun reuses every valid chunk (a corrupt or
    foreign one is retrained), so an interrupted run continues where it
    stopped and ends with the same bits as an uninterrupted one (every
    random draw is seeded by the network's seed or by ``(seed, chunk, architecture,
    epoch)``). ``on_chunk(k, num_chunks)`` runs after chunk ``k`` is on disk.
    If ``out_path`` already holds this exact zoo nothing is redone; a zoo of
    other settings is refused unless ``overwrite``.

    The settings (``family`` ... ``device``) are those of :class:`~neuralgraph.zoo.settings.ZooSettings`,
    made from these arguments and checked once; :func:`write_zoo` takes the object itself.
    """
    settings = ZooSettings(family=family, dataset=dataset, root=root, num_networks=num_networks, epochs=epochs,
                           checkpoints=checkpoints, image_size=image_size, n_train=n_train, n_test=n_test,
                           n_train_eval=n_train_eval, batch_size=batch_size, seed=seed, chunk_size=chunk_size,
                           num_architectures=num_architectures, hidden_choices=hidden_choices, device=device)
    return write_zoo(out_path, settings, resume=resume, overwrite=overwrite, keep_chunks=keep_chunks,
                     progress=progress, on_chunk=on_chunk)


def write_zoo(out_path: str | os.PathLike, settings: ZooSettings, *, resume: bool = True, overwrite: bool = False,
              keep_chunks: bool = False, progress: bool = True,
              on_chunk: Callable[[int, int], None] | None = None) -> Path:
    """:func:`generate_zoo` with the settings as one checked object."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise ValueError(f"{out_path} is a directory; a zoo is one file: give its path, e.g. {out_path / 'zoo.pt'}")
    z = settings
    data = load_zoo_data(z.dataset, z.root, z.image_size, z.n_train, z.n_test)
    if data["train_x"].shape[0] < z.batch_size:
        raise ValueError(f"{z.dataset}: {data['train_x'].shape[0]} training images, fewer than "
                         f"batch_size={z.batch_size}")
    archs, hparams = sample_zoo(z.family, z.num_networks, z.seed, in_channels=1, image_size=data["train_x"].shape[-1],
                                hidden_choices=z.hidden_choices, num_architectures=z.num_architectures)
    for a in archs:
        check_trainable(a)
    config = z.record(data["train_x"].shape[0], data["test_x"].shape[0], data["train_x"].shape[-1])
    whole = fingerprint({**config, **{k: tensor_digest(v) for k, v in data.items()}})
    if _finished(out_path, whole, resume, overwrite):
        return out_path
    store = ChunkStore(out_path.with_name(out_path.name + ".chunks"), _checksums)
    bounds = [(k, s, min(z.num_networks, s + z.chunk_size))
              for k, s in enumerate(range(0, z.num_networks, z.chunk_size))]
    with lock_directory(store.directory, "zoo chunk directory", "wait for the other zoo run to finish"):
        done = {k: c for k, s, e in bounds if resume
                and (c := store.load(k, s, e, whole, _valid_chunk(s, e))) is not None}
        _train_chunks(out_path, z, data, archs, hparams, bounds, done, store, whole, progress, on_chunk)
        obj = _merge(done, bounds, archs, hparams, z.checkpoints, z.family, {**config, "fingerprint": whole})
        atomic_save(obj, out_path)
        if not keep_chunks:
            store.remove(len(bounds), rmdir=False)   # the lock file is still in it
    try:
        store.directory.rmdir()
    except OSError:
        pass
    return out_path


def _finished(out_path: Path, whole: str, resume: bool, overwrite: bool) -> bool:
    """Whether ``out_path`` already holds this zoo; ``ValueError`` if it holds another and not ``overwrite``."""
    if not out_path.is_file():
        return False
    try:
        existing = load_zoo_file(out_path)["meta"].get("fingerprint")
    except ValueError:
        existing = None
    if existing == whole and resume:
        return True
    if not overwrite:
        raise ValueError(f"{out_path} holds a zoo of other settings; pass overwrite=True (--overwrite) "
                         "or choose another output file")
    return False


def _train_chunks(out_path: Path, z: ZooSettings, data: dict, archs, hparams, bounds, done: dict, store: ChunkStore,
                  whole: str, progress: bool, on_chunk) -> None:
    """Train every chunk not in ``done``, saving each as it finishes (and adding it to ``done``)."""
    device = z.device
    train_x, train_y = data["train_x"].to(device), data["train_y"].to(device)
    eval_sets = {"train": (train_x[:z.n_train_eval], train_y[:z.n_train_eval]),
                 "test": (data["test_x"].to(device), data["test_y"].to(device))}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=z.num_networks * z.epochs, unit="net-epoch", desc=f"training {out_path.name}",
                   initial=sum((e - s) * z.epochs for k, s, e in bounds if k in done))
    try:
        for k, s, e in bounds:
            if k in done:
                continue
            chunk = _train_chunk(k, s, e, archs, hparams, train_x, train_y, eval_sets, z.epochs, z.checkpoints,
                                 z.batch_size, z.seed, bar)
            chunk.update(chunk=k, start=s, stop=e, fingerprint=whole)
            store.save(k, chunk)
            done[k] = chunk
            if on_chunk is not None:
                on_chunk(k, len(bounds))
    finally:
        if bar is not None:
            bar.close()


def _train_chunk(k, s, e, archs, hparams, train_x, train_y, eval_sets, epochs, checkpoints, batch_size, seed,
                 bar) -> dict:
    by_arch: dict[int, list[int]] = {}
    for i in range(s, e):
        by_arch.setdefault(hparams[i]["arch"], []).append(i)
    groups, metrics = [], {m: torch.empty(e - s, len(checkpoints)) for m in METRICS}
    for a in sorted(by_arch):
        idx = by_arch[a]
        res = train_group(archs[a], [hparams[i] for i in idx], train_x, train_y, eval_sets, epochs=epochs,
                          checkpoints=checkpoints, batch_size=batch_size, group_seed=derive_seed(seed, 7, k, a),
                          on_epoch=None if bar is None else (lambda _e, n=len(idx): bar.update(n)))
        pos = torch.tensor(idx) - s
        for m in METRICS:
            metrics[m][pos] = res[m]
        groups.append({"arch": a, "index": torch.tensor(idx, dtype=torch.long),
                       "weights": [compact_tensor(t, torch.float32) for t in res["weights"]],
                       "biases": [None if t is None else compact_tensor(t, torch.float32) for t in res["biases"]],
                       "norms": [None if t is None else compact_tensor(t, torch.float32) for t in res["norms"]]})
    return {"groups": groups, "metrics": metrics}


def _merge(done: dict, bounds, archs, hparams, checkpoints, family, meta) -> dict:
    chunks = [done[k] for k, _, _ in bounds]
    groups = []
    for a in range(len(archs)):
        parts = [g for c in chunks for g in c["groups"] if g["arch"] == a]
        if not parts:
            continue
        cat = lambda key, m: None if parts[0][key][m] is None else torch.cat([p[key][m] for p in parts])
        groups.append({"arch": a, "index": torch.cat([p["index"] for p in parts]),
                       **{key: [cat(key, m) for m in range(archs[a].num_layers)]
                          for key in ("weights", "biases", "norms")}})
    obj = {"format_version": ZOO_FORMAT, "family": family, "archs": [a.to_dict() for a in archs], "groups": groups,
           "hparams": list(hparams), "epochs": torch.tensor(checkpoints, dtype=torch.long),
           "metrics": {m: torch.cat([c["metrics"][m] for c in chunks]) for m in METRICS}, "meta": meta}
    obj["checksums"] = {**_checksums(obj), "structure": entry_structures(obj)}
    return obj


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------

def resolve_zoo_file(data: str | os.PathLike, who: str, hint: str = "`neuralgraph zoo generate`") -> Path:
    """The zoo file ``data`` names: the file itself, or the one ``.pt`` file of a directory.

    ``ValueError`` / ``FileNotFoundError`` name ``who`` (the task asking) and say how to make one (``hint``).
    """
    path = Path(data)
    if path.is_dir():
        found = sorted(path.glob("*.pt"))
        if len(found) != 1:
            raise ValueError(f"{who}: {path} holds {len(found)} .pt files; pass the zoo file itself (from {hint})")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{who}: zoo file not found: {path} (make one with {hint})")
    return path


class ZooSplit(NamedTuple):
    """Network ids of a zoo split by network (:meth:`ZooDataset.split`): ``train``, ``val``, ``test``,
    each a ``[n]`` long tensor, pairwise disjoint.
    """

    train: Tensor
    val: Tensor
    test: Tensor


class ZooDataset:
    """A zoo file, loaded: targets, splits by network, and PyG batches of neural graphs.

    Attributes: ``archs``, ``hparams`` (per network), ``epochs`` (checkpoint
    epochs), ``metrics`` (``[n, C]`` each), ``valid`` (``[n]``: every parameter and
    metric finite; a diverged network is not valid and is left out of
    :meth:`split`), ``edge_dim`` (the largest kernel area of the zoo; every batch
    is padded to it, so batches of any networks of the zoo concatenate).
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True) -> None:
        self.path = Path(path)
        obj = load_zoo_file(self.path, verify=verify)
        self.family: str = obj["family"]
        self.archs: list[Architecture] = obj["archs"]
        self.groups: list[dict] = obj["groups"]
        self.hparams: list[dict] = obj["hparams"]
        self.epochs: list[int] = obj["epochs"].tolist()
        self.metrics: dict[str, Tensor] = obj["metrics"]
        self.meta: dict = obj["meta"]
        n = len(self.hparams)
        self.group_of = torch.empty(n, dtype=torch.long)
        self.row_of = torch.empty(n, dtype=torch.long)
        valid = torch.ones(n, dtype=torch.bool)
        for g, group in enumerate(self.groups):
            self.group_of[group["index"]] = g
            self.row_of[group["index"]] = torch.arange(group["index"].numel())
            for key in ("weights", "biases", "norms"):
                for t in group[key]:
                    if t is not None:
                        valid[group["index"]] &= torch.isfinite(t.flatten(1)).all(1)
        for t in self.metrics.values():
            valid &= torch.isfinite(t).all(1)
        self.valid = valid
        self.edge_dim = max(a.edge_dim for a in self.archs)

    @property
    def taps(self) -> int:
        """Deprecated name of ``edge_dim``."""
        warn_renamed("ZooDataset.taps", "ZooDataset.edge_dim")
        return self.edge_dim

    def __len__(self) -> int:
        return len(self.hparams)

    def checkpoint(self, epoch: int | None = None) -> int:
        """Position of ``epoch`` among the checkpoints (``None``: the last)."""
        if epoch is None:
            return len(self.epochs) - 1
        if epoch not in self.epochs:
            raise ValueError(f"{self.path}: no checkpoint at epoch {epoch!r}; the zoo has epochs {self.epochs}")
        return self.epochs.index(epoch)

    def targets(self, epoch: int | None = None, metric: str = "test_acc") -> Tensor:
        """``[n]`` the metric of every network at the checkpoint ``epoch`` (default the last)."""
        if metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}; the zoo records {sorted(self.metrics)}")
        return self.metrics[metric][:, self.checkpoint(epoch)]

    def split(self, val: float = 0.15, test: float = 0.15, seed: int = 0) -> ZooSplit:
        """Disjoint train / val / test network ids (valid networks only), shuffled with ``seed``.

        A network is in exactly one split with all its checkpoints, so no
        network's weights reach two splits.
        """
        for name, f in (("val", val), ("test", test)):
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
                raise ValueError(f"{name} fraction must be in [0, 1), got {f!r}")
        if val + test >= 1:
            raise ValueError(f"val + test fractions must be < 1, got {val} + {test}")
        ids = self.valid.nonzero().reshape(-1)
        ids = ids[torch.randperm(ids.numel(), generator=torch.Generator().manual_seed(int(seed)))]
        n_val, n_test = int(round(val * ids.numel())), int(round(test * ids.numel()))
        if ids.numel() - n_val - n_test < 1:
            raise ValueError(f"{self.path}: {ids.numel()} valid networks are too few to split")
        return ZooSplit(ids[n_val + n_test:].sort().values, ids[:n_val].sort().values,
                        ids[n_val:n_val + n_test].sort().values)

    def params(self, indices: Any, epoch: int | None = None) -> list[tuple[Architecture, Tensor, dict]]:
        """Per group among ``indices``: ``(arch, network ids [b], {"weights", "biases", "norms"} stacked [b, ...])``."""
        idx = as_index(indices, len(self))
        c = self.checkpoint(epoch)
        out = []
        for g, group in enumerate(self.groups):
            sel = idx[self.group_of[idx] == g]
            if sel.numel() == 0:
                continue
            rows = self.row_of[sel]
            out.append((self.archs[group["arch"]], sel,
                        {key: [None if t is None else t[rows, c] for t in group[key]]
                         for key in ("weights", "biases", "norms")}))
        return out

    def batch(self, indices: Any, epoch: int | None = None, metric: str = "test_acc",
              transform: Callable[[list, list], tuple[list, list]] | None = None) -> Batch:
        """PyG ``Batch`` of the selected networks' graphs at checkpoint ``epoch``, one ``stacked_to_batch`` per group.

        Graphs come grouped by architecture (in group order, then by network id
        within a group): ``batch.net_index`` holds each graph's network id,
        ``batch.y`` its target (``metric`` at ``epoch``). ``transform(weights,
        biases)`` (stacked per layer, ``None`` for an absent bias) may replace a
        group's parameters before conversion, e.g. a training augmentation.
        """
        y_all = self.targets(epoch, metric)
        parts = []
        for arch, ids, p in self.params(indices, epoch):
            weights, biases = (p["weights"], p["biases"]) if transform is None else transform(p["weights"], p["biases"])
            b = stacked_to_batch(weights, biases, arch, edge_dim=self.edge_dim,
                                 norms=p["norms"] if arch.has_norm else None)
            set_graph_attr(b, "y", y_all[ids])
            set_graph_attr(b, "net_index", ids)
            parts.append(b)
        if not parts:
            raise ValueError("no networks selected")
        return concat_batches(parts)

    def model(self, i: int, epoch: int | None = None) -> nn.Sequential:
        """Network ``i`` at checkpoint ``epoch`` as an ``nn.Sequential`` (eval mode), through its neural graph."""
        return to_model(self.batch([int(i)], epoch).get_example(0))
