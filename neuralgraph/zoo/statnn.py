"""StatNN (Unterthiner et al., 2020): predict a network's accuracy from per-layer weight statistics.

Features: for every parametric layer, the mean, variance and the 0/25/50/75/100 %
quantiles of its weights and of its biases (14 numbers per layer). They are
invariant to permutations of hidden neurons by construction (statistics of a
whole layer). A regressor maps them to the accuracy: scikit-learn's
``HistGradientBoostingRegressor`` (``"gbt"``, Unterthiner et al.'s choice and
the default) or an MLP with two hidden layers of 1,000 ReLU units (``"mlp"``,
the StatNN of the NFN and neural-graphs papers' tables). The metric is
Kendall's tau (``scipy.stats.kendalltau``, tau-b) between predicted and true
accuracy of held-out networks.

In a zoo of mixed depths (Wild Park) layer ``m`` of a shallower network has
no value: its features are NaN, which the gradient-boosted trees handle
natively; the MLP sees them as 0 after standardisation, plus missing-value
indicators for the columns that have absent values.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["STAT_NAMES", "STATNN_REGRESSORS", "statnn_features", "zoo_statnn_features", "fit_statnn",
           "evaluate_statnn", "kendall_tau", "tau_difference"]

STAT_NAMES = ("mean", "var", "q0", "q25", "q50", "q75", "q100")
#: StatNN's regressors: gradient-boosted trees, or the papers' two-hidden-layer MLP.
STATNN_REGRESSORS = ("gbt", "mlp")
_Q = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)


def _stats(t: Tensor) -> Tensor:
    """``[n, 7]`` statistics of each row of ``t [n, k]`` (float64)."""
    t = t.double()
    return torch.cat([t.mean(1, keepdim=True), t.var(1, unbiased=False, keepdim=True),
                      torch.quantile(t, _Q, dim=1).t()], 1)


def statnn_features(weights: Sequence[Tensor], biases: Sequence[Tensor | None]) -> Tensor:
    """StatNN features of n networks of one architecture.

    Args:
        weights: per layer ``[n, out, in, *kernel]``.
        biases: per layer ``[n, out]`` (``None``: the bias statistics are 0).

    Shapes: returns ``[n, 14 * num_layers]`` float64: per layer the 7 weight
    statistics (:data:`STAT_NAMES`) then the 7 bias statistics.
    """
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"statnn_features needs one bias (or None) per weight tensor, got {len(weights)} weights "
                         f"and {len(biases)} biases")
    n = weights[0].shape[0]
    cols = []
    for m, (w, b) in enumerate(zip(weights, biases)):
        if w.dim() < 2 or w.shape[0] != n or (b is not None and tuple(b.shape[:1]) != (n,)):
            raise ValueError(f"statnn_features: layer {m} weight {tuple(w.shape)} / bias "
                             f"{None if b is None else tuple(b.shape)} are not stacks of {n} networks")
        cols.append(_stats(w.reshape(n, -1)))
        cols.append(torch.zeros(n, 7, dtype=torch.float64) if b is None else _stats(b.reshape(n, -1)))
    return torch.cat(cols, 1)


def zoo_statnn_features(zoo, indices: Any, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[k, 14 * max_layers]`` (NaN where a network has fewer layers) and network ids ``[k]``.

    Rows follow the order of :meth:`ZooDataset.params` (grouped by
    architecture); the ids say which network each row is.
    """
    parts = zoo.params(indices, epoch)
    width = 14 * max(arch.num_layers for arch in zoo.archs)
    X, ids = [], []
    for arch, sel, p in parts:
        f = statnn_features(p["weights"], p["biases"]).numpy()
        X.append(np.pad(f, ((0, 0), (0, width - f.shape[1])), constant_values=np.nan))
        ids.append(sel.numpy())
    return np.concatenate(X), np.concatenate(ids)


def fit_statnn(X: np.ndarray, y: np.ndarray, seed: int = 0, regressor: str = "gbt", **kwargs: Any):
    """StatNN's regressor fitted on features ``X [n, f]`` and targets ``y [n]``; has ``predict``.

    Args:
        X, y: features (NaN where a network lacks a layer) and targets.
        seed: the regressor's random state.
        regressor: ``"gbt"``: ``HistGradientBoostingRegressor`` (defaults ``max_iter=300``,
            ``learning_rate=0.05``, early stopping off); ``"mlp"``: ``MLPRegressor`` with
            hidden layers ``(1000, 1000)`` (Adam, at most 500 epochs, early stopping on 10 %
            of the samples when there are at least 100) after standardisation, absent layers
            set to 0 and flagged by missing-value indicators.
        **kwargs: override the regressor's settings.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"fit_statnn needs X [n, features] and y [n], got {X.shape} and {y.shape}")
    if X.shape[0] < 2:
        raise ValueError(f"fit_statnn needs at least 2 networks, got {X.shape[0]}")
    if regressor == "gbt":
        params = {"max_iter": 300, "learning_rate": 0.05, "early_stopping": False, "random_state": seed, **kwargs}
        return HistGradientBoostingRegressor(**params).fit(X, y)
    if regressor == "mlp":
        params = {"hidden_layer_sizes": (1000, 1000), "early_stopping": X.shape[0] >= 100, "max_iter": 500,
                  "random_state": seed, **kwargs}
        model = make_pipeline(StandardScaler(),                 # NaN-aware: absent layers stay NaN
                              SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True),
                              MLPRegressor(**params))
        return model.fit(X, y)
    raise ValueError(f"fit_statnn: unknown regressor {regressor!r}; choose one of {', '.join(STATNN_REGRESSORS)}")


def kendall_tau(pred: Any, target: Any) -> float:
    """Kendall's tau-b between predictions and targets (``scipy.stats.kendalltau``).

    NaN when either side is constant (tau-b is 0 / 0 there); model selection ranks
    such an epoch last (:meth:`~neuralgraph.tasks.base.Task.selection_key`).
    """
    from scipy.stats import kendalltau

    p = np.asarray(pred.detach().cpu() if isinstance(pred, Tensor) else pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target.detach().cpu() if isinstance(target, Tensor) else target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"kendall_tau: pred has {p.size} values, target {t.size}")
    if p.size < 2 or not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError(f"kendall_tau needs at least 2 finite pairs, got {p.size} (finite: "
                         f"{int((np.isfinite(p) & np.isfinite(t)).sum())})")
    return float(kendalltau(p, t).statistic)


def tau_difference(pred_a: Any, pred_b: Any, target: Any, num_resamples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict[str, float]:
    """How much better predictor ``a`` ranks the same networks than ``b``: Kendall's tau difference and its CI.

    A paired bootstrap over networks: each resample draws the test networks with
    replacement and scores both predictors on the same draw, so the interval
    reflects the noise of a finite test set, not of two independent ones.

    Args:
        pred_a, pred_b: two predictors' outputs for the same networks ``[n]``.
        target: the true metric ``[n]``.
        num_resamples: bootstrap resamples.
        seed: seed of the resampling.
        level: coverage of the percentile interval.

    Returns:
        ``{"diff", "low", "high"}``: ``tau(a) - tau(b)`` on all networks and the percentile interval.
    """
    from scipy.stats import kendalltau

    a, b, t = (np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64).reshape(-1)
               for x in (pred_a, pred_b, target))
    if not a.shape == b.shape == t.shape:
        raise ValueError(f"tau_difference: pred_a, pred_b and target have {a.size}, {b.size} and {t.size} values")
    diff = kendall_tau(a, t) - kendall_tau(b, t)
    rng = np.random.default_rng(seed)
    draws = np.empty(num_resamples)
    for r in range(num_resamples):            # one scipy call per resample; n log n each
        i = rng.integers(0, t.size, t.size)
        draws[r] = kendalltau(a[i], t[i]).statistic - kendalltau(b[i], t[i]).statistic
    low, high = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": float(diff), "low": float(low), "high": float(high)}


def evaluate_statnn(zoo, split=None, epoch: int | None = None, metric: str = "test_acc", seed: int = 0,
                    train_epochs: Sequence[int] = (), regressor: str = "gbt") -> dict:
    """Fit StatNN on the train (+ val) networks of ``split`` and report Kendall's tau on its test networks.

    Args:
        zoo: a :class:`~neuralgraph.zoo.ZooDataset`.
        split: a :class:`~neuralgraph.zoo.files.ZooSplit` (default ``zoo.split(seed=seed)``).
        epoch: the checkpoint whose weights are the input and whose ``metric`` is the target.
        train_epochs: also fit on the training networks at these checkpoints (as the regress
            task's ``train_epochs``: the same extra samples for both).
        regressor: ``"gbt"`` or ``"mlp"`` (:func:`fit_statnn`).

    Returns:
        ``{"tau", "r2", "pred", "target", "ids"}`` for the test networks.
    """
    from sklearn.metrics import r2_score

    split = zoo.split(seed=seed) if split is None else split
    y_all = zoo.targets(epoch, metric).numpy()
    if split.test.numel() < 2:
        raise ValueError(f"StatNN needs at least 2 test networks to rank, the split has {split.test.numel()} "
                         f"({int(zoo.valid.sum())} valid networks in {zoo.path}); use a larger zoo or test fraction")
    train_ids = torch.cat([split.train, split.val])
    X_tr, id_tr = zoo_statnn_features(zoo, train_ids, epoch)
    y_tr = y_all[id_tr]
    last = zoo.epochs[zoo.checkpoint(epoch)]
    for e in (e for e in train_epochs if e != last):
        X_e, id_e = zoo_statnn_features(zoo, train_ids, e)
        X_tr, y_tr = np.concatenate([X_tr, X_e]), np.concatenate([y_tr, zoo.targets(e, metric).numpy()[id_e]])
    X_te, id_te = zoo_statnn_features(zoo, split.test, epoch)
    model = fit_statnn(X_tr, y_tr, seed=seed, regressor=regressor)
    pred = model.predict(X_te)
    return {"tau": kendall_tau(pred, y_all[id_te]), "r2": float(r2_score(y_all[id_te], pred)), "pred": pred,
            "target": y_all[id_te], "ids": id_te}
