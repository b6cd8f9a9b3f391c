"""Probe features: every neuron's activations on a set of learned probe inputs.

Each input network is run *as a function* of its parameters, read from the graph, on shared
learned probe inputs. Graphs are grouped by architecture (a loop over the distinct
architectures of the batch only, never over graphs); inside a group the parameters are
stacked (:func:`neuralgraph.graph.batch_to_stacked_groups`, the library's one reader) and the
library's functional interpreter (:func:`neuralgraph.functional.network_values`) is
``vmap``-ed over the group with :func:`torch.func.vmap`, so every supported architecture works.

The value of a neuron is the output of its layer after the layer's post-modules (activation,
normalisation, residual add, pooling); for convolutions it is the spatial mean of its channel.
Input neurons get the probe input itself. Because the values are a function of the network,
permuting hidden neurons permutes them identically (equivariance), and they are
differentiable w.r.t. the probe inputs (and the graph's parameters).

Devices and dtypes: nothing is cached between calls. The probe inputs are read from the parameters (so they follow ``.to(device)`` / ``.double()``)
and cast to the graph's dtype, and every gathered tensor is made on the graph's device. A
graph on another device than the probes is refused with one clear error instead of a
matmul device mismatch deep inside ``vmap``.

Input-size rule: probe points are ``[P, max_in]``; a network with ``d_0`` inputs sees the
first ``d_0`` coordinates. Probe images are ``[P, max_in, S, S]``; a Conv2d network with
``c`` input channels sees the first ``c`` channels, a Conv1d network the first row
(``[P, c, S]``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import vmap
from torch_geometric.data import Data

from neuralgraph.architecture import Architecture
from neuralgraph.functional import network_values
from neuralgraph.graph import batch_to_stacked_groups, graph_archs
from neuralgraph.schema import IDENTITY_NORM, batch_vector

__all__ = ["ProbeFeatures", "network_values"]


class ProbeFeatures(nn.Module):
    """Learned probe inputs; ``forward(graph)`` gives ``[N, n_probes]`` neuron activations."""

    def __init__(self, n_probes: int = 16, max_in: int = 64, image_size: int = 16, scale: float = 1.0) -> None:
        super().__init__()
        self.n_probes, self.max_in, self.image_size = n_probes, max_in, image_size
        self.scale = scale
        self.points = nn.Parameter(torch.empty(n_probes, max_in))
        self.images = nn.Parameter(torch.empty(n_probes, max_in, image_size, image_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Probe inputs uniform in ``[-scale, scale]`` (the coordinate range of INRs for scale 1),
        from a fixed seed: every model starts from the same probes."""
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.points.copy_((torch.rand(self.points.shape, generator=g) * 2 - 1) * self.scale)
            self.images.copy_((torch.rand(self.images.shape, generator=g) * 2 - 1) * self.scale)

    def inputs(self, arch: Architecture) -> Tensor:
        """The probe inputs for networks of ``arch`` (see the module docstring for the rule)."""
        first = arch.layers[0]
        d0 = first.in_features
        if d0 > self.max_in:
            raise ValueError(f"a {first.kind} network has {d0} inputs but probes were built with "
                             f"max_in={self.max_in}; raise max_in")
        if first.kind == "linear":
            return self.points[:, :d0]
        if first.kind == "conv2d":
            return self.images[:, :d0]
        return self.images[:, :d0, 0]

    def forward(self, graph: Data) -> Tensor:
        """Every neuron's value on each probe input, the networks run on their raw parameters.

        Args:
            graph: a batch of neural graphs with ``arch`` (one architecture per graph), on the
                probes' device.

        Shapes: ``[N, n_probes]``: row ``i`` holds neuron ``i``'s value on each probe (module
        docstring: post-module output, spatial mean for convolutions, the probe itself for inputs).
        """
        B = len(graph_archs(graph, "ProbeFeatures"))     # checks one Architecture per graph
        if graph.x.device != self.points.device:
            raise ValueError(f"ProbeFeatures: the graph is on {graph.x.device} but the model is on "
                             f"{self.points.device}; move the batch with batch.to(device)")
        gb = batch_vector(graph)
        dtype = graph.x.dtype
        out = graph.x.new_zeros(graph.num_nodes, self.n_probes)
        rows, vals = [], []
        # the networks run on their real parameters (raw), also when the processor sees normalised ones;
        # one vectorised forward per architecture (activations matter here, not only the parameter shapes)
        groups = batch_to_stacked_groups(graph, by="architecture", raw=True, norms=True)
        for arch, ids, weights, biases, norms in groups:
            count = ids.numel()
            biases = [b if b is not None else weights[j].new_zeros(count, spec.out_features)
                      for j, (b, spec) in enumerate(zip(biases, arch.layers))]
            identity = torch.tensor(IDENTITY_NORM, dtype=dtype, device=graph.x.device)
            norms = [n if n is not None else identity.expand(count, spec.out_features, 4)
                     for n, spec in zip(norms, arch.layers)]
            x = self.inputs(arch).to(dtype)
            f = lambda w, b, n: network_values(arch, w, b, n, x)  # noqa: E731
            try:
                per_layer = vmap(f)(weights, biases, norms)  # list of [count, P, d_m]
            except RuntimeError as err:
                raise ValueError(f"probe forward failed for architecture {arch.widths} "
                                 f"({arch.layers[0].kind} input; probe image_size={self.image_size}, "
                                 f"too small for these convolutions?): {err}") from None
            local = torch.full((B,), -1, dtype=torch.long, device=gb.device)
            local[ids] = torch.arange(count, device=gb.device)
            nodes_local = local[gb]
            for m, v in enumerate(per_layer):
                sel = ((graph.node_layer == m) & (nodes_local >= 0)).nonzero().squeeze(1)
                rows.append(sel)
                vals.append(v[nodes_local[sel], :, graph.node_pos[sel]])
        return out.index_put((torch.cat(rows),), torch.cat(vals))
