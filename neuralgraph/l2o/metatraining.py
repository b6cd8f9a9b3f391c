"""Meta-training a learned optimizer by truncated backpropagation through unrolled optimisation.

``B`` optimizees (the small CNN on Fashion-MNIST) train side by side, each on its own batches of
128 images, with the learned optimizer. One *outer step* unrolls ``unroll`` inner steps of all of
them, then updates the meta-parameters by Adam on the gradient of the meta-loss (the mean training
loss over the unroll's steps and networks), clipped in norm. The optimizees carry on from where
the unroll left them; a network is re-initialised (a fresh draw of its initialisation) once it
has taken ``horizon`` steps, so the optimizer meets every phase of a ``horizon``-step training.
The first lives are shortened so the networks are spread over the phases
(``horizon = unroll`` re-initialises after every unroll).

Meta-gradient: first order in the optimizee's gradients (they enter the learned optimizer as
inputs and are not differentiated again, as in Andrychowicz et al., 2016), exact otherwise: it
flows through every update and through the parameters the optimizer reads. With that, the
gradient of the loss at step ``k`` with respect to the meta-parameters is ``g_k . d theta_k``,
so the meta-loss is differentiated through ``sum_k <g_k, theta_k>`` (``g_k`` fixed) and the
optimizees' forward graphs need not be kept. The learned optimizer's activations of every inner
step are kept for the backward pass (tens of MB per step for the default optimizee); with
``recompute`` each step is recomputed in the backward pass instead (activation checkpointing: a
few numbers per parameter and step, about 1.4x the time).

Meta-validation: every ``validate_every`` outer steps (and after the last), ``validate_seeds`` fresh
networks train for ``validate_steps`` steps with the current optimizer (no meta-gradient; fixed
initialisations and batches), and their accuracy on the task's held-out validation images is
recorded; the best optimizer so far is kept in ``<out>/best.pt``, which
:func:`~neuralgraph.l2o.load_learned_optimizer` reads (as the trainer keeps the best epoch). The
truncated meta-objective and the 1,000-step goal disagree (short-horizon bias: the optimizer that
lowers the loss over the next unroll is not the one that trains best for 1,000 steps), so the
last outer step is often not the best.

Resumable at every outer step: ``<out>/last.pt`` (:mod:`neuralgraph.l2o.checkpoint`) holds the
meta-parameters, Adam's state, the optimizees, the data generator and the history; a resumed run
is bit-identical to an uninterrupted one (same thread count).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..architecture import Architecture
from ..io import lock_directory
from ..seeding import derive_seed
from ..train.checkpoint import config_mismatch
from .checkpoint import BEST_NAME, CHECKPOINT_NAME, load_meta_params, load_run, save_run
from .features import DECAYS, OptimizerState, advance
from .layout import ParamLayout
from .optimizer import LearnedOptimizer, OptimizerSpec
from .evaluate import train_optimizees
from .processors import PROCESSORS
from .rules import LearnedRule
from .tasks import Task, init_theta, load_task, loss_and_grad, optimizee_cnn, sample_batch

__all__ = ["MetaTrainConfig", "meta_train", "optimizer_spec", "MetaTrainer"]

#: Settings that may change when a run is resumed (they do not change its trajectory).
RESUMABLE_CHANGES = ("out", "data_root", "outer_steps", "threads")


@dataclass
class MetaTrainConfig:
    """Settings of a meta-training run.

    Flat, one field per flag of ``neuralgraph l2o meta-train`` and saved as such in ``last.pt``; the
    learned optimizer's own settings (:class:`OptimizerSpec`) are built from five of them and the
    optimizee's architecture by :func:`optimizer_spec`, so they are written here once, as inputs.

    Args:
        out: run directory (``last.pt`` is written there).
        data_root: directory holding ``fashion_mnist/`` (IDX files).
        processor: ``none`` (FF), ``nggnn``, ``ngt`` or ``dwsnet``.
        hidden, num_layers, context, ff_hidden, step_mult: the learned optimizer (:class:`OptimizerSpec`).
        image_size, channels, cnn_layers, init: the optimizee (``image_size`` 28, 14 or 7).
        batch_size: images per inner step and network.
        unroll: inner steps per outer step (truncation length).
        horizon: inner steps before a network is re-initialised (a multiple of ``unroll``).
        optimizees: networks trained side by side.
        outer_steps: meta-parameter updates in total.
        meta_lr: Adam's learning rate on the meta-parameters.
        clip_grad_norm: clipping of the meta-gradient's norm.
        seed: seed of the meta-parameters, the initialisations and the data order.
        n_val: Fashion-MNIST training images held out (never seen in meta-training).
        n_train: cap on the training images read (tests).
        recompute: recompute each inner step of the optimizer in the backward pass (less memory).
        validate_every: outer steps between meta-validations (0: only after the last).
        validate_steps, validate_seeds: steps and networks of a meta-validation.
        threads: torch intra-op threads (``None``: leave as is).
    """

    out: str
    data_root: str
    processor: str = "nggnn"
    hidden: int = 32
    num_layers: int = 3
    context: int = 8
    ff_hidden: int = 32
    step_mult: float = 1e-3
    image_size: int = 14
    channels: int = 16
    cnn_layers: int = 3
    init: str = "he_normal"
    batch_size: int = 128
    unroll: int = 50
    horizon: int = 1000
    optimizees: int = 4
    outer_steps: int = 1000
    meta_lr: float = 3e-4
    clip_grad_norm: float = 1.0
    seed: int = 0
    n_val: int = 10000
    n_train: int | None = None
    recompute: bool = False
    validate_every: int = 25
    validate_steps: int = 1000
    validate_seeds: int = 2
    threads: int | None = None

    def __post_init__(self) -> None:
        self.out, self.data_root = str(self.out), str(self.data_root)
        if self.processor not in PROCESSORS:
            raise ValueError(f"l2o: unknown processor {self.processor!r}; choose one of {', '.join(PROCESSORS)}")
        for name in ("hidden", "num_layers", "context", "ff_hidden", "channels", "cnn_layers", "batch_size",
                     "unroll", "horizon", "optimizees", "outer_steps", "n_val", "validate_steps", "validate_seeds"):
            _positive_int(name, getattr(self, name))
        if isinstance(self.validate_every, bool) or not isinstance(self.validate_every, int) or self.validate_every < 0:
            raise ValueError(f"l2o: validate_every must be an integer >= 0, got {self.validate_every!r}")
        for name in ("n_train", "threads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if not isinstance(self.recompute, bool):
            raise ValueError(f"l2o: recompute must be a bool, got {self.recompute!r}")
        if self.horizon % self.unroll:
            raise ValueError(f"l2o: horizon ({self.horizon}) must be a multiple of unroll ({self.unroll})")
        for name in ("meta_lr", "clip_grad_norm", "step_mult"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"l2o: {name} must be a finite number > 0, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"l2o: seed must be an integer >= 0, got {self.seed!r}")

    def to_dict(self) -> dict:
        """Plain values, for the checkpoint."""
        return asdict(self)


def _positive_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"l2o: {name} must be an integer >= 1, got {v!r}")


def optimizer_spec(config: MetaTrainConfig, arch: Architecture) -> OptimizerSpec:
    """The learned optimizer a config meta-trains; NG-GNN's degree scaler is the optimizee graph's mean degree."""
    degree = 2.0 * arch.num_edges / arch.num_nodes            # messages flow both ways
    return OptimizerSpec(processor=config.processor, hidden=config.hidden, num_layers=config.num_layers,
                         context=config.context, ff_hidden=config.ff_hidden, step_mult=config.step_mult,
                         avg_degree=round(degree, 3))


class MetaTrainer:
    """The state of a meta-training run and its outer step (used by :func:`meta_train`).

    Args:
        config: the run's settings.
        task: the meta-training task's images.
        state: a checkpoint to continue from (``None``: a fresh run).
    """

    def __init__(self, config: MetaTrainConfig, task: Task, state: dict | None = None) -> None:
        self.config = config
        self.task = task
        self.arch = optimizee_cnn(config.channels, config.cnn_layers)
        spec = optimizer_spec(config, self.arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(config.seed, 0) % 2 ** 63)
            self.opt = LearnedOptimizer(spec)
        self.layout: ParamLayout = self.opt.layout(self.arch)
        self.meta_opt = torch.optim.Adam(self.opt.parameters(), lr=config.meta_lr)
        self.generator = torch.Generator()
        B, H, T = config.optimizees, config.horizon, config.unroll
        if state is None:
            self.generator.manual_seed(derive_seed(config.seed, 1) % 2 ** 63)
            self.outer_step, self.history, self.elapsed, self.best = 0, [], 0.0, None
            self.life = torch.zeros(B, dtype=torch.long)
            # first lives end at spread-out multiples of the unroll, then every `horizon` steps
            self.end = torch.tensor([T * max(1, math.ceil((b + 1) * H / (B * T))) for b in range(B)])
            self.theta = self._fresh(torch.arange(B))
            self.opt_state = OptimizerState(torch.zeros(B, self.layout.numel, len(DECAYS)),
                                            torch.zeros(B, dtype=torch.long))
        else:
            load_meta_params(self.opt, state, Path(config.out) / CHECKPOINT_NAME)
            self.meta_opt.load_state_dict(state["meta_optimizer"])
            self.generator.set_state(state["data_rng"])
            self.outer_step, self.history, self.elapsed = int(state["outer_step"]), list(state["history"]), \
                float(state["elapsed_s"])
            self.best = state.get("best")
            o = state["optimizees"]
            self.theta, self.life, self.end = o["theta"], o["life"], o["end"]
            self.opt_state = OptimizerState(o["momenta"], o["step"])

    def _fresh(self, rows: Tensor) -> Tensor:
        """New initialisations of networks ``rows`` (their seed: the run seed, the row, its life)."""
        seeds = [derive_seed(self.config.seed, 2, int(r), int(self.life[r])) % 2 ** 63 for r in rows]
        return init_theta(self.layout, seeds, self.config.init)

    def state(self) -> dict:
        """Everything a resumed run needs (see :mod:`neuralgraph.l2o.checkpoint`)."""
        return {"config": self.config.to_dict(), "spec": self.opt.spec.to_dict(), "arch": self.arch.to_dict(),
                "meta_params": self.opt.state_dict(), "meta_optimizer": self.meta_opt.state_dict(),
                "outer_step": self.outer_step, "history": self.history, "elapsed_s": self.elapsed, "best": self.best,
                "data_rng": self.generator.get_state(),
                "optimizees": {"theta": self.theta, "momenta": self.opt_state.momenta, "step": self.opt_state.step,
                               "life": self.life, "end": self.end}}

    def unroll(self) -> tuple[Tensor, Tensor]:
        """Unroll ``config.unroll`` inner steps from the current networks.

        Returns the meta-loss surrogate (its gradient is the meta-gradient; see the module) and the
        training losses ``[unroll + 1, B]`` (row ``k``: at the parameters after ``k`` steps).
        """
        cfg, layout = self.config, self.layout
        theta, st = self.theta, self.opt_state
        surrogate, losses = theta.new_zeros(()), []
        for k in range(cfg.unroll + 1):
            x, y = sample_batch(self.task, self.generator, cfg.optimizees, cfg.batch_size)
            loss, grad = loss_and_grad(layout, theta, x, y)
            losses.append(loss)
            if k > 0:
                surrogate = surrogate + (grad * theta).sum()
            if k == cfg.unroll:
                break
            st = advance(st, grad)
            if cfg.recompute:
                update = checkpoint(self.opt, layout, theta, grad, st.momenta, st.step, use_reentrant=False)
            else:
                update = self.opt(layout, theta, grad, st.momenta, st.step)
            theta = theta - update
            st = OptimizerState(st.momenta, st.step + 1)
        self._unrolled = (theta, st)
        return surrogate / (cfg.unroll * cfg.optimizees), torch.stack(losses)

    def outer(self) -> dict:
        """One outer step: unroll, meta-update, re-initialise finished or diverged networks. Returns its history row."""
        start = time.perf_counter()
        self.opt.train()
        surrogate, losses = self.unroll()
        self.meta_opt.zero_grad(set_to_none=True)
        surrogate.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.opt.parameters(), self.config.clip_grad_norm)
        skipped = not bool(torch.isfinite(norm))
        if not skipped:
            self.meta_opt.step()
        self.meta_opt.zero_grad(set_to_none=True)
        theta, st = self._unrolled
        self.theta, self.opt_state = theta.detach(), OptimizerState(st.momenta, st.step)
        diverged = ~torch.isfinite(self.theta).all(1) | ~torch.isfinite(losses[-1])
        self._reinit((self.opt_state.step >= self.end) | diverged)
        self.outer_step += 1
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        meta = losses[1:]
        row = {"outer_step": self.outer_step, "meta_loss": float(meta.mean()) if torch.isfinite(meta).all() else
               float("nan"), "final_loss": float(losses[-1].mean()), "grad_norm": float(norm), "skipped": skipped,
               "diverged": int(diverged.sum()), "seconds": round(seconds, 3)}
        self.history.append(row)
        return row

    def validate(self) -> float:
        """Mean validation accuracy of fresh networks trained by the current optimizer (see the module)."""
        cfg = self.config
        seeds = [derive_seed(cfg.seed, 5, s) % 2 ** 63 for s in range(cfg.validate_seeds)]
        theta = init_theta(self.layout, seeds, cfg.init)
        rec = train_optimizees(self.layout, self.task, LearnedRule(self.opt, self.layout, theta),
                               steps=cfg.validate_steps, seeds=len(seeds), data_seed=derive_seed(cfg.seed, 6) % 2 ** 63,
                               batch_size=cfg.batch_size, test=False)
        self.opt.train()
        return float(rec["val_acc"].double().mean())

    def _reinit(self, rows: Tensor) -> None:
        rows = rows.nonzero().view(-1)
        if not rows.numel():
            return
        self.life[rows] += 1
        self.end[rows] = self.config.horizon
        theta = self.theta.clone()
        theta[rows] = self._fresh(rows)
        momenta, step = self.opt_state.momenta.clone(), self.opt_state.step.clone()
        momenta[rows], step[rows] = 0, 0
        self.theta, self.opt_state = theta, OptimizerState(momenta, step)


def meta_train(config: MetaTrainConfig, *, resume: bool = True, max_outer_steps: int | None = None,
               time_limit: float | None = None, log: Callable[[str], None] | None = print,
               log_every: int = 10) -> dict:
    """Meta-train (or continue meta-training) a learned optimizer; see the module docstring.

    Args:
        config: the run's settings.
        resume: continue the run in ``config.out`` if there is one (its settings must match,
            except :data:`RESUMABLE_CHANGES`); ``False`` refuses a directory that holds a run.
        max_outer_steps: stop after this many outer steps in this call (the run stays resumable).
        time_limit: stop after the outer step that passes this many seconds in this call.
        log: where progress lines go (``None``: silent).
        log_every: outer steps between progress lines.

    Returns ``{"outer_step", "outer_steps", "finished", "elapsed_s", "history", "best"}`` (``best``: the
    outer step and validation accuracy of ``best.pt``).
    """
    if not isinstance(config, MetaTrainConfig):
        raise ValueError(f"l2o: meta_train takes a MetaTrainConfig, got {type(config).__name__}")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    with lock_directory(out, "l2o run directory"):
        path = out / CHECKPOINT_NAME
        state = None
        if path.exists():
            if not resume:
                raise FileExistsError(f"l2o: {out} already holds a meta-training run; resume it or choose another "
                                      "--out")
            state = load_run(path)
            diff = config_mismatch(state["config"], config.to_dict(), ignore=RESUMABLE_CHANGES)
            if diff:
                raise ValueError(f"l2o: {path} was meta-trained with other settings ({'; '.join(diff)}); resume "
                                 "with the same settings or choose another --out")
        task = load_task("fashion_mnist", config.data_root, config.image_size, config.n_val, config.n_train)
        trainer = MetaTrainer(config, task, state)
        start, done = time.perf_counter(), 0
        while trainer.outer_step < config.outer_steps:
            if max_outer_steps is not None and done >= max_outer_steps:
                break
            if time_limit is not None and time.perf_counter() - start >= time_limit:
                break
            row = trainer.outer()
            every = config.validate_every
            if trainer.outer_step == config.outer_steps or (every and trainer.outer_step % every == 0):
                row["val_acc"] = trainer.validate()
                if trainer.best is None or row["val_acc"] > trainer.best["val_acc"]:
                    trainer.best = {"outer_step": trainer.outer_step, "val_acc": row["val_acc"]}
                    save_run(trainer.state(), out / BEST_NAME)
            save_run(trainer.state(), path)
            done += 1
            if log is not None and (trainer.outer_step % log_every == 0 or trainer.outer_step == config.outer_steps):
                recent = trainer.history[-log_every:]
                val = f", validation accuracy {row['val_acc']:.4f}" if "val_acc" in row else ""
                log(f"[l2o {config.processor}] outer step {row['outer_step']}/{config.outer_steps}: meta-loss "
                    f"{sum(r['meta_loss'] for r in recent) / len(recent):.4f}, grad norm {row['grad_norm']:.3g}, "
                    f"{sum(r['seconds'] for r in recent) / len(recent):.2f} s/step{val}")
        return {"outer_step": trainer.outer_step, "outer_steps": config.outer_steps,
                "finished": trainer.outer_step >= config.outer_steps, "elapsed_s": trainer.elapsed,
                "history": trainer.history, "best": trainer.best}
