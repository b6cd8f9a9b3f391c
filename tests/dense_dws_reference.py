"""An independent dense DWS layer for one fixed architecture (test oracle and benchmark baseline).

Written straight from the derivation (docs/processors.md, "The DWS layer"), with no message passing:
weights are stacked tensors ``W[m]: [B, d_m, d_{m-1}, C]`` and biases
``b[m]: [B, d_m, C]``. For every pair of blocks (X -> Y) and every choice of one
option per layer (same neuron / pool-broadcast on shared hidden layers, pool on
X-only hidden layers, broadcast on Y-only hidden layers, position-dependent
parameters on free layers) it adds one ``einsum`` term with its own parameter
``theta[*Y free positions, *X free positions, C', C]``.

``copy_from_layer`` reads the parameters of a ``DWSLayer(tying="full",
pair_mixing="full")`` into this layout; it only knows the layer's parameter
*names* (which block of the spec each parameter is), not its computation.
"""
from __future__ import annotations

import itertools
import string

import torch
from torch import Tensor


class DenseDWS:
    def __init__(self, widths, c_in: int, c_out: int, reduce: str = "mean", dtype=torch.float64,
                 generator: torch.Generator | None = None) -> None:
        self.widths = list(widths)
        self.M = len(widths) - 1
        self.c_in, self.c_out, self.reduce = c_in, c_out, reduce
        self.objects = [("W", m) for m in range(1, self.M + 1)] + [("b", m) for m in range(1, self.M + 1)]
        self.terms = []       # (X, Y, options)
        for X in self.objects:
            for Y in self.objects:
                for opts in self._options(X, Y):
                    self.terms.append((X, Y, opts))
        self.theta = {t: torch.randn(*self._theta_shape(t), dtype=dtype, generator=generator) / (c_in ** 0.5)
                      for t in self.terms}
        self.bias = {Y: torch.randn(*self._free_dims(Y), c_out, dtype=dtype, generator=generator) for Y in self.objects}

    # -- structure ---------------------------------------------------------------------------
    def axes(self, obj) -> tuple[int, ...]:
        kind, m = obj
        return (m, m - 1) if kind == "W" else (m,)

    def is_free(self, layer: int) -> bool:
        return layer == 0 or layer == self.M

    def _options(self, X, Y):
        layers = sorted(set(self.axes(X)) | set(self.axes(Y)))
        per = []
        for l in layers:
            inx, iny = l in self.axes(X), l in self.axes(Y)
            if self.is_free(l):
                per.append([(l, "free")])
            elif inx and iny:
                per.append([(l, "id"), (l, "pool")])
            elif inx:
                per.append([(l, "pool")])
            else:
                per.append([(l, "bcast")])
        return [tuple(c) for c in itertools.product(*per)]

    def _free_dims(self, obj) -> list[int]:
        return [self.widths[l] for l in self.axes(obj) if self.is_free(l)]

    def _theta_shape(self, term) -> list[int]:
        X, Y, _ = term
        return self._free_dims(Y) + self._free_dims(X) + [self.c_out, self.c_in]

    def dimension(self) -> int:
        return sum(t.numel() // (self.c_in * self.c_out) for t in self.theta.values())

    # -- forward -------------------------------------------------------------------------------
    def __call__(self, W: list[Tensor], b: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """``W[m-1]: [B, d_m, d_{m-1}, C]``, ``b[m-1]: [B, d_m, C]`` -> the same with C' channels."""
        data = {("W", m): W[m - 1] for m in range(1, self.M + 1)}
        data.update({("b", m): b[m - 1] for m in range(1, self.M + 1)})
        B = W[0].shape[0]
        out = {}
        for Y in self.objects:
            shape = [B] + [self.widths[l] for l in self.axes(Y)] + [self.c_out]
            out[Y] = torch.zeros(shape, dtype=W[0].dtype) + self.bias[Y].reshape(
                [1] + [self.widths[l] if self.is_free(l) else 1 for l in self.axes(Y)] + [self.c_out])
        alphabet = string.ascii_letters.replace("z", "").replace("o", "").replace("c", "")
        for term in self.terms:
            X, Y, opts = term
            opts = dict(opts)
            letters = iter(alphabet)
            xl, yl = {}, {}
            scale = 1.0
            for l, o in opts.items():
                if o == "id":
                    xl[l] = yl[l] = next(letters)
                else:
                    if l in self.axes(X):
                        xl[l] = next(letters)
                        if o == "pool" and self.reduce == "mean":
                            scale /= self.widths[l]
                    if l in self.axes(Y):
                        yl[l] = next(letters)
            xs = "z" + "".join(xl[l] for l in self.axes(X)) + "c"
            ts = "".join(yl[l] for l in self.axes(Y) if self.is_free(l)) + \
                 "".join(xl[l] for l in self.axes(X) if self.is_free(l)) + "oc"
            present = [l for l in self.axes(Y) if opts[l] in ("id", "free")]
            ys = "z" + "".join(yl[l] for l in present) + "o"
            val = torch.einsum(f"{xs},{ts}->{ys}", data[X], self.theta[term]) * scale
            view = [B] + [self.widths[l] if l in present else 1 for l in self.axes(Y)] + [self.c_out]
            out[Y] = out[Y] + val.reshape(view)
        return [out[("W", m)] for m in range(1, self.M + 1)], [out[("b", m)] for m in range(1, self.M + 1)]

    # -- parameters of a DWSLayer(tying="full", pair_mixing="full") --------------------------------
    def _slot(self, obj, h: int | None, side: str) -> str:
        kind, m = obj
        M = self.M
        if h is None:           # fully pooled input / broadcast output (anchor terms)
            if side == "x":
                if kind == "b":
                    return f"B{m}" if m < M else "O"
                return "F" if m == 1 else "L" if m == M else f"E{m}"
            return ("B" if m < M else "O") if kind == "b" else ("F" if m == 1 else "L" if m == M else "E")
        if kind == "b":
            return "B"
        if m == 1:
            return "F"
        if m == M:
            return "L"
        if side == "x":
            return "IN" if m == h else "OUT"
        return "Ud" if m == h else "Us"

    def _anchor(self, Y) -> int:
        kind, m = Y
        if kind == "b":
            return m
        return 1 if m == 1 else self.M - 1 if m == self.M else m

    def copy_from_layer(self, layer) -> None:
        """Read the parameters of ``layer`` (built for this architecture's depth) into theta/bias."""
        M = self.M
        used = set()
        for term in self.terms:
            X, Y, opts = term
            opts = dict(opts)
            ids = [l for l, o in opts.items() if o == "id"]
            if len(ids) == 2:
                name = f"e{M}_{X[1]}__self__self"
            elif len(ids) == 1:
                h = ids[0]
                name = f"n{M}_{h}__{self._slot(Y, h, 'y')}__{self._slot(X, h, 'x')}"
            else:
                name = f"a{M}_{self._anchor(Y)}__{self._slot(Y, None, 'y')}__{self._slot(X, None, 'x')}"
            w = layer.weights[name]                              # [Py, C', Px, C]
            used.add(name)
            py = self._free_dims(Y)
            px = self._free_dims(X)
            w = w[: (py[0] if py else 1), :, : (px[0] if px else 1), :]
            self.theta[term] = w.detach().permute(0, 2, 1, 3).reshape(py + px + [self.c_out, self.c_in]).to(self.theta[term].dtype)
        if used != set(layer.weights.keys()):
            raise AssertionError(f"layer parameters not matched to a term: {set(layer.weights.keys()) - used}")
        for Y in self.objects:
            name = f"a{M}_{self._anchor(Y)}__{self._slot(Y, None, 'y')}"
            py = self._free_dims(Y)
            self.bias[Y] = layer.biases[name][: (py[0] if py else 1)].detach().reshape(py + [self.c_out]).to(self.bias[Y].dtype)


def stacked_to_features(W: list[Tensor], b: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Node ``[B*N, C]`` and edge ``[B*E, C]`` features in ``neuralgraph.stacked_to_batch`` order."""
    B, C = W[0].shape[0], W[0].shape[-1]
    d0 = W[0].shape[2]
    x = torch.cat([W[0].new_zeros(B, d0, C)] + list(b), 1).reshape(-1, C)
    e = torch.cat([w.reshape(B, -1, C) for w in W], 1).reshape(-1, C)
    return x, e


def features_to_stacked(x: Tensor, e: Tensor, widths, B: int) -> tuple[list[Tensor], list[Tensor]]:
    C = x.shape[-1]
    x = x.reshape(B, -1, C)
    e = e.reshape(B, -1, C)
    W, b, eo, no = [], [], 0, widths[0]
    for m in range(1, len(widths)):
        n = widths[m] * widths[m - 1]
        W.append(e[:, eo: eo + n].reshape(B, widths[m], widths[m - 1], C))
        b.append(x[:, no: no + widths[m]])
        eo += n
        no += widths[m]
    return W, b
