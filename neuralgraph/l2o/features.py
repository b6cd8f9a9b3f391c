"""Per-parameter input features of a learned optimizer (Metz et al., 2022; ``learned_optimization``'s MLP optimizer).

For every parameter: its gradient, its value and momenta of the gradient at the decay rates
:data:`DECAYS`, each column scaled by the inverse root mean square over the parameter's tensor
(the "second-moment normaliser": a tensor's features have unit second moment whatever the
layer's scale); then a tanh embedding of the step number, the same for every parameter
(:data:`TIMESCALES`). Per-tensor means forget the order of a tensor's entries, so the
features of a permuted network are the permuted features.

Shapes: ``B`` networks, ``P`` parameters each, ``D = len(DECAYS)`` momenta.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["DECAYS", "TIMESCALES", "NUM_FEATURES", "NUM_TIME_FEATURES", "OptimizerState", "init_state",
           "advance", "normalised_features", "time_features"]

#: Decay rates of the gradient momenta (learned_optimization's MLP optimizer).
DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
#: Timescales of the step embedding ``tanh(t / s - 1)``.
TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
#: Per-parameter features before the step embedding: gradient, value, momenta.
NUM_FEATURES = 2 + len(DECAYS)
NUM_TIME_FEATURES = len(TIMESCALES)
_EPS = 1e-5


class OptimizerState(NamedTuple):
    """What a learned optimizer carries between steps for B networks.

    Attributes:
        momenta: ``[B, P, D]`` exponential averages of the gradient at :data:`DECAYS`.
        step: ``[B]`` steps taken so far (int64).
    """

    momenta: Tensor
    step: Tensor


def init_state(B: int, P: int, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> OptimizerState:
    """The state before the first step: zero momenta, step 0."""
    return OptimizerState(torch.zeros(B, P, len(DECAYS), device=device, dtype=dtype),
                          torch.zeros(B, dtype=torch.long, device=device))


def advance(state: OptimizerState, grad: Tensor) -> OptimizerState:
    """The momenta after seeing ``grad [B, P]`` (the step count is advanced after the update)."""
    decays = torch.tensor(DECAYS, dtype=grad.dtype, device=grad.device)
    return OptimizerState(state.momenta * decays + (1 - decays) * grad.unsqueeze(-1), state.step)


def normalised_features(theta: Tensor, grad: Tensor, momenta: Tensor, tensor_id: Tensor, num_tensors: int) -> Tensor:
    """``[g, p, m_1..m_D]`` per parameter, each column divided by its RMS over the parameter's tensor.

    Args:
        theta: parameters ``[B, P]`` (differentiable: the meta-gradient flows through them).
        grad: gradients ``[B, P]``.
        momenta: ``[B, P, D]``.
        tensor_id: ``[P]`` the tensor of each parameter (see :class:`~neuralgraph.l2o.ParamLayout`).
        num_tensors: number of tensors.

    Shapes: returns ``[B, P, NUM_FEATURES]``.
    """
    feats = torch.cat([grad.unsqueeze(-1), theta.unsqueeze(-1), momenta], -1)
    B, P, F = feats.shape
    counts = torch.bincount(tensor_id, minlength=num_tensors).to(feats.dtype)
    sums = feats.new_zeros(B, num_tensors, F).index_add(1, tensor_id, feats.square())
    mean_sq = sums / counts.view(1, -1, 1)
    return feats * torch.rsqrt(_EPS + mean_sq)[:, tensor_id]


def time_features(step: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``tanh(t / s - 1)`` for every timescale ``s``: ``[B]`` steps -> ``[B, NUM_TIME_FEATURES]``."""
    scales = torch.tensor(TIMESCALES, dtype=dtype, device=step.device)
    return torch.tanh(step.to(dtype).unsqueeze(-1) / scales - 1.0)
