"""Learning to optimize with neural graphs (Kofinas et al., ICLR 2024, section 5.4).

A learned optimizer reads the optimizee's neural graph, with per-parameter features (gradient,
value, momenta; Metz et al., 2022) on its nodes (biases) and edges (weights), runs a processor
(NG-GNN, NG-T, DWSNet, or none: the per-parameter FF baseline) and updates every parameter with a
per-parameter MLP that also reads the processor's equivariant context.

* :mod:`~neuralgraph.l2o.layout`: flat parameters <-> neural-graph slots (:class:`ParamLayout`).
* :mod:`~neuralgraph.l2o.features`: the per-parameter features and the optimizer state.
* :mod:`~neuralgraph.l2o.processors` and :mod:`~neuralgraph.l2o.optimizer`: the learned optimizer.
* :mod:`~neuralgraph.l2o.tasks`: the optimizee (a small CNN) and its tasks (Fashion-MNIST, MNIST,
  corrupted Fashion-MNIST), vectorised over networks.
* :mod:`~neuralgraph.l2o.metatraining`: truncated backpropagation through unrolls, resumable.
* :mod:`~neuralgraph.l2o.evaluate`: meta-testing against Adam with a learning-rate grid.
* :mod:`~neuralgraph.l2o.wrapper`: :class:`L2O`, a ``torch.optim.Optimizer`` for your own ``nn.Sequential``.

Commands: ``neuralgraph l2o meta-train ...`` and ``neuralgraph l2o evaluate --optimizer RUN ...``.
"""
from .checkpoint import load_learned_optimizer, load_run
from .evaluate import evaluate_optimizers
from .features import DECAYS, TIMESCALES, OptimizerState
from .layout import ParamLayout, model_parameters, optimizee_architecture
from .metatraining import MetaTrainConfig, meta_train
from .optimizer import LearnedOptimizer, OptimizerSpec
from .processors import PROCESSORS
from .tasks import TASKS, load_task, optimizee_cnn
from .wrapper import L2O

__all__ = [
    "DECAYS", "TIMESCALES", "OptimizerState", "ParamLayout", "model_parameters", "optimizee_architecture",
    "LearnedOptimizer", "OptimizerSpec", "PROCESSORS", "MetaTrainConfig", "meta_train", "load_learned_optimizer",
    "load_run", "TASKS", "load_task", "optimizee_cnn", "L2O", "evaluate_optimizers",
]
