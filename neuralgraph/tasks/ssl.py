"""``ssl``: self-supervised (contrastive) embeddings of INRs, probed linearly (DWSNets' sine-wave experiment).

Training: every INR of a batch gives two *views*, each a perturbed copy of its
parameters; the processor's invariant head embeds all ``2B`` views (``out_dim``,
default 16) and the InfoNCE / NT-Xent loss (temperature 0.1) pulls the two views
of an INR together and pushes the other ``2B - 2`` embeddings away. Evaluation:
a linear regression (scikit-learn) from frozen embeddings of the *unperturbed*
train INRs to their targets (``meta["targets"]``, e.g. the ``(a, b)`` of ``a
sin(b x)``), scored on the test INRs by the MSE averaged over samples and
targets, as the DWSNets code does (``np.square(labels - preds).mean()``); this is
the number of the DWSNets / GMN tables (DWSNets 1.39, GMN 1.13).

Views (decision). DWSNets' intent, Gaussian noise of 0.2 times each layer's
spread and masking of half the entries (``experiments/ssl/data/inr_dataset.py``),
is applied to the **raw** parameters: a masked entry is a removed connection
(zero), not the layer's mean, so every view is a real network, and the model
sees it standardised with the train statistics like any INR (``x_raw`` /
``edge_attr_raw`` hold the view itself, so probe features run the same
network). Per view and per entry: ``theta' = m * (theta + noise * sigma_l * eps)``,
``eps ~ N(0, 1)``, ``m ~ Bernoulli(1 - mask)``, ``sigma_l`` the train split's
standard deviation of that layer's weights (or biases): ``noise`` on the
standardised scale the model sees. Differences from the DWSNets code: its
"noise" adds the constant ``0.2 * std`` (no random draw), its masking is
``F.dropout`` (kept entries doubled), and its first view is the unperturbed INR
(``clean_view=True`` here). The run's ``augment`` (e.g. hidden permutations,
``--augment permute=true``) is applied to each view first, independently.

Batches. ``train_batch`` / ``eval_batch`` return ``2B`` graphs: rows ``0..B-1``
are the first views of ``indices``, rows ``B..2B-1`` the second ones (the
trainer calls these hooks instead of ``dataset.batch``). Validation views are
deterministic (a fixed seed per batch), so the validation loss ranks epochs
fairly; it depends on the evaluation batch size, as any InfoNCE value does.
Model selection: the lowest validation InfoNCE (as in DWSNets).

Not in DWSNets' setup here: the trainer optimises the processor's parameters
only, so there is no separate projection MLP between the embedding and the
loss; the probe reads the loss's own embedding.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Task

__all__ = ["Contrastive", "ViewAugment", "info_nce", "info_nce_per_view", "embed"]

_EVAL_SEED = 0x5EED_55E1


def info_nce_per_view(z: Tensor, temperature: float) -> Tensor:
    """NT-Xent loss of each of ``2B`` embeddings: view ``i`` and ``i +- B`` are the positive pair.

    ``loss_i = -log( exp(s_ip / t) / sum_{k != i} exp(s_ik / t) )`` with cosine
    similarities ``s`` and ``p = (i + B) mod 2B`` (SimCLR; the DWSNets loss).

    Shapes:
        z ``[2B, d]`` -> ``[2B]``
    """
    if z.dim() != 2 or z.shape[0] % 2:
        raise ValueError(f"info_nce: expected [2B, d] embeddings (two views per INR), got {tuple(z.shape)}")
    n = z.shape[0]
    zn = F.normalize(z.float(), dim=1)
    sim = zn @ zn.T / temperature
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = (torch.arange(n, device=z.device) + n // 2) % n
    return F.cross_entropy(sim, positive, reduction="none")


def info_nce(z: Tensor, temperature: float) -> Tensor:
    """Mean NT-Xent loss over the ``2B`` embeddings (see :func:`info_nce_per_view`)."""
    return info_nce_per_view(z, temperature).mean()


class ViewAugment:
    """Two perturbed views per network, for :meth:`INRDataset.batch` (an ``augment`` object).

    Called on stacked parameters of ``2B`` networks (the indices twice); every row gets
    its own draw. Row ``r`` gets ``base`` (e.g. hidden permutations) first, then Gaussian
    noise of ``noise`` times the layer's spread and masking with rate ``mask`` (see the
    module docstring). With ``clean_view`` the first ``B`` rows are left unperturbed
    (``base`` still applies).

    Args:
        noise: noise scale relative to each layer's standard deviation (``>= 0``).
        mask: probability of zeroing each weight and bias, in ``[0, 1)``.
        stats: the dataset statistics (``weight_std`` / ``bias_std`` ``[M]``) that scale the noise.
        base: an augmentation applied to every view first (``None``: none).
        clean_view: leave the first view of each network unperturbed (DWSNets' code).
    """

    active = True

    def __init__(self, noise: float, mask: float, stats: dict[str, Tensor], base: Any = None,
                 clean_view: bool = False) -> None:
        self.noise, self.mask, self.base, self.clean_view = float(noise), float(mask), base, bool(clean_view)
        self.weight_std = stats["weight_std"].float()
        self.bias_std = stats["bias_std"].float()

    def __call__(self, weights: Sequence[Tensor], biases: Sequence[Tensor],
                 generator: torch.Generator | None = None) -> tuple[list[Tensor], list[Tensor]]:
        W, b = list(weights), list(biases)
        if self.base is not None and getattr(self.base, "active", True):
            W, b = self.base(W, b, generator)
        rows = W[0].shape[0]
        hit = torch.ones(rows, dtype=torch.bool)
        if self.clean_view:
            hit[: rows // 2] = False

        def perturb(t: Tensor, std: float) -> Tensor:
            shape = (rows,) + (1,) * (t.dim() - 1)
            h = hit.view(shape).to(t.device)
            if self.noise:
                eps = torch.randn(t.shape, generator=generator, dtype=t.dtype)
                t = t + (self.noise * std) * eps.to(t.device) * h.to(t.dtype)
            if self.mask:
                drop = torch.rand(t.shape, generator=generator).to(t.device) < self.mask
                t = t.masked_fill(drop & h, 0.0)
            return t

        W = [perturb(w, float(self.weight_std[m])) for m, w in enumerate(W)]
        b = [perturb(x, float(self.bias_std[m])) for m, x in enumerate(b)]
        return W, b


@torch.no_grad()
def embed(model: nn.Module, dataset: Any, device: torch.device | str, batch_size: int,
          indices: Tensor | None = None) -> Tensor:
    """``[n, out_dim]`` embeddings of the unperturbed INRs ``dataset[indices]`` (eval mode, on CPU)."""
    was_training = model.training
    model.eval()
    idx = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices)
    out = [model(dataset.batch(idx[s:s + batch_size]).to(device)).float().cpu()
           for s in range(0, len(idx), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


class Contrastive(Task):
    """Contrastive embeddings of INRs (InfoNCE on two perturbed views), probed by linear regression.

    Metrics per split: ``loss`` (InfoNCE over the ``2B`` views of each batch) and ``acc``
    (how often a view's nearest other embedding is its partner). Test metrics of the
    selected model add the linear probe: ``probe_mse`` (MSE averaged over the targets,
    the papers' number), ``probe_mse_<name>`` per target, ``probe_val_mse`` and
    ``mean_mse`` (predicting the train mean: the floor to beat).

    Args:
        temperature: InfoNCE temperature (> 0; DWSNets: 0.1).
        out_dim: embedding size of the invariant head (DWSNets: 16).
        noise: Gaussian noise of a view, relative to each layer's standard deviation (DWSNets: 0.2).
        mask: masking rate of a view, in ``[0, 1)`` (DWSNets: 0.5).
        clean_view: the first view of each INR is the INR itself (the DWSNets code) instead
            of a second perturbed copy.
    """

    name = "ssl"
    description = "contrastive INR embeddings (two perturbed views, InfoNCE); linear probe of meta['targets']"
    head = "invariant"
    metrics = ("loss", "acc")

    def __init__(self, temperature: float = 0.1, out_dim: int = 16, noise: float = 0.2, mask: float = 0.5,
                 clean_view: bool = False) -> None:
        def real(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not real(temperature) or temperature <= 0:
            raise ValueError(f"ssl: temperature must be a finite number > 0, got {temperature!r}")
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"ssl: out_dim must be an integer >= 1, got {out_dim!r}")
        if not real(noise) or noise < 0:
            raise ValueError(f"ssl: noise must be a finite number >= 0, got {noise!r}")
        if not real(mask) or not 0 <= mask < 1:
            raise ValueError(f"ssl: mask must be in [0, 1) (1 would zero every parameter), got {mask!r}")
        if not isinstance(clean_view, bool):
            raise ValueError(f"ssl: clean_view must be a bool, got {clean_view!r}")
        self.temperature, self.embedding_dim = float(temperature), out_dim
        self.noise, self.mask, self.clean_view = float(noise), float(mask), clean_view
        self.stats: dict[str, Tensor] | None = None
        self.target_names: list[str] = []

    # ------------------------------------------------------------------ data
    @staticmethod
    def targets(dataset: Any) -> Tensor:
        """``[n, k]`` float targets of a split (``meta["targets"]``), checked (``ValueError`` naming the file)."""
        meta = getattr(dataset, "meta", None) or {}
        where = getattr(dataset, "path", "the dataset")
        t = meta.get("targets")
        if t is None:
            raise ValueError(f"ssl: {where} has no meta['targets'] (the regression targets of the linear probe); "
                             f"make sine-wave INRs with neuralgraph.inr.sines.build_sine_splits "
                             f"(`neuralgraph fit-inrs --source sines`)")
        if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[0] != len(dataset) or t.shape[1] < 1 \
                or not t.dtype.is_floating_point:
            raise ValueError(f"ssl: {where}: meta['targets'] must be a float tensor [{len(dataset)}, k], got "
                             f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"ssl: {where}: meta['targets'] contains NaN or inf")
        digest = meta.get("targets_sha256")
        if digest is not None:
            from ..io import tensor_sha256

            if tensor_sha256(t) != digest:
                raise ValueError(f"ssl: {where}: meta['targets'] does not match its stored checksum "
                                 f"(targets_sha256): the file is corrupted")
        return t.float()

    def setup(self, splits: dict[str, Any]) -> None:
        """Check that all splits hold the same probe targets and at least 2 INRs; keep the target names and
        the training split's statistics (the views' noise is relative to them)."""
        ks = {s: self.targets(d).shape[1] for s, d in splits.items()}
        names = {s: list(getattr(d, "meta", {}).get("target_names") or []) for s, d in splits.items()}
        if len(set(ks.values())) != 1 or any(n != names["train"] for n in names.values()):
            raise ValueError(f"ssl: the splits have different targets: {ks} / {names}")
        k = ks["train"]
        self.target_names = names["train"] if len(names["train"]) == k else [f"t{i}" for i in range(k)]
        self.stats = splits["train"].stats
        for s, d in splits.items():
            if len(d) < 2:
                raise ValueError(f"ssl: {getattr(d, 'path', s)} holds {len(d)} INR(s); the contrastive loss and "
                                 f"the probe need at least 2")

    def setup_inference(self, dataset: Any, inference: dict[str, Any]) -> None:
        """:meth:`setup` for the evaluated data alone; the views' noise is relative to the run's training
        statistics (the data's own when the checkpoint predates them)."""
        self.setup({"train": dataset})
        if inference.get("stats") is not None:
            self.stats = inference["stats"]

    def out_dim(self) -> int:
        """The embedding size (the ``out_dim`` option)."""
        return self.embedding_dim

    def _views(self, base: Any = None) -> "ViewAugment":
        if self.stats is None:
            raise RuntimeError("ssl: call setup(splits) before building batches")
        return ViewAugment(self.noise, self.mask, self.stats, base=base, clean_view=self.clean_view)

    def train_batch(self, dataset: Any, indices: Tensor, augment: Any = None,
                    generator: torch.Generator | None = None) -> Any:
        """``2B`` graphs: two perturbed views of each INR of ``indices`` (the run's ``augment`` first)."""
        idx = torch.as_tensor(indices)
        return dataset.batch(torch.cat([idx, idx]), augment=self._views(augment), generator=generator)

    def eval_batch(self, dataset: Any, indices: Tensor) -> Any:
        """Like :meth:`train_batch` with fixed randomness per batch (a deterministic validation loss)."""
        idx = torch.as_tensor(indices)
        first = int(idx[0]) if len(idx) else 0
        gen = torch.Generator().manual_seed(_EVAL_SEED + 1_000_003 * first + len(idx))
        return dataset.batch(torch.cat([idx, idx]), augment=self._views(), generator=gen)

    # ------------------------------------------------------------------ loss and metrics
    @staticmethod
    def _check_views(output: Tensor, batch: Any) -> None:
        n = output.shape[0]
        index = getattr(batch, "inr_index", None)
        if n % 2 or (index is not None and not torch.equal(index[: n // 2], index[n // 2:])):
            raise ValueError(f"ssl: the batch of {n} graphs is not two views per INR; build it with "
                             f"Contrastive.train_batch / eval_batch (the trainer must call these hooks)")

    def loss(self, output: Tensor, batch: Any) -> Tensor:
        """InfoNCE of the embeddings ``output`` ``[2B, out_dim]`` (row ``i`` and ``i + B`` are views of
        one INR); ``ValueError`` if the batch is not two views per INR."""
        self._check_views(output, batch)
        return info_nce(output, self.temperature)

    def collect(self, output: Tensor, batch: Any) -> dict[str, Tensor]:
        """Per view: ``loss`` (its InfoNCE term) and ``correct`` (its nearest other embedding, by cosine,
        is the other view of the same INR: top-1 retrieval)."""
        self._check_views(output, batch)
        z = output.detach().float()
        loss = info_nce_per_view(z, self.temperature)
        zn = F.normalize(z, dim=1)
        sim = (zn @ zn.T).fill_diagonal_(float("-inf"))
        n = z.shape[0]
        correct = sim.argmax(1) == (torch.arange(n, device=z.device) + n // 2) % n
        return {"loss": loss, "correct": correct}

    def summarize(self, values: dict[str, Tensor]) -> dict[str, float]:
        return {"loss": float(values["loss"].double().mean()), "acc": float(values["correct"].double().mean())}

    def describe(self, metrics: dict[str, float]) -> str:
        text = f"infonce {metrics['loss']:.4f} top1 {metrics['acc']:.1%}"
        if "probe_mse" in metrics:
            text += f" probe mse {metrics['probe_mse']:.3f} (mean {metrics['mean_mse']:.3f})"
        return text

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "out_dim": self.embedding_dim, "noise": self.noise,
                "mask": self.mask, "clean_view": self.clean_view}

    # ------------------------------------------------------------------ probe and picture
    def probe(self, model: nn.Module, splits: dict[str, Any], device: torch.device | str, batch_size: int
              ) -> dict[str, float]:
        """Linear regression from frozen train embeddings to the targets; MSE on val and test."""
        from sklearn.linear_model import LinearRegression

        emb = {s: embed(model, splits[s], device, batch_size).double().numpy() for s in ("train", "val", "test")}
        tgt = {s: self.targets(splits[s]).double().numpy() for s in ("train", "val", "test")}
        reg = LinearRegression().fit(emb["train"], tgt["train"])
        err = {s: (reg.predict(emb[s]) - tgt[s]) ** 2 for s in ("val", "test")}
        out = {"probe_mse": float(err["test"].mean()), "probe_val_mse": float(err["val"].mean()),
               "mean_mse": float(((tgt["test"] - tgt["train"].mean(0)) ** 2).mean())}
        names = self.target_names or [f"t{i}" for i in range(tgt["test"].shape[1])]
        out.update({f"probe_mse_{n}": float(err["test"][:, i].mean()) for i, n in enumerate(names)})
        return out

    def finish(self, model: nn.Module, splits: dict[str, Any], device: torch.device, batch_size: int
               ) -> dict[str, float]:
        """The linear probe's metrics (:meth:`probe`)."""
        return self.probe(model, splits, device, batch_size)

    def draw(self, model: nn.Module, splits: dict[str, Any], run_dir: Path, device: torch.device,
             batch_size: int, n: int, title: str, max_points: int = 2000) -> list[Path]:
        """``tsne.png``: 2-D t-SNE of the test embeddings, one panel per target (colour = its value)."""
        from sklearn.manifold import TSNE

        from ..train.plots import _figure, save_cropped_figure

        dataset = splits["test"]
        m = min(len(dataset), max_points)
        if m < 5:
            return []
        idx = torch.arange(m)
        z = embed(model, dataset, device, batch_size, idx).double().numpy()
        xy = TSNE(n_components=2, perplexity=min(30.0, (m - 1) / 3), random_state=0, init="pca").fit_transform(z)
        t = self.targets(dataset)[idx].numpy()
        names = self.target_names or [f"t{i}" for i in range(t.shape[1])]
        fig = _figure(5.2 * len(names), 4.4)
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for i, (ax, name) in enumerate(zip(axes, names)):
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=t[:, i], cmap="viridis", s=6)
            fig.colorbar(sc, ax=ax, label=name)
            ax.set_title(f"t-SNE of {m} test embeddings, colour: {name}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(title, fontsize=10)
        return [save_cropped_figure(fig, Path(run_dir) / "tsne.png")]
