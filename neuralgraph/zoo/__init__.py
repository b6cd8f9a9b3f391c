"""Model zoos built here: many small classifiers trained at once, their files, and the StatNN baseline.

* :mod:`~neuralgraph.zoo.specs`: the sampled architectures and hyper-parameters
  (Small CNN Zoo protocol, Wild-Park-style CNNs, MLP classifiers).
* :mod:`~neuralgraph.zoo.train`: vectorised training over networks (grouped
  convolutions, per-network optimisers), and the one-at-a-time baseline.
* :mod:`~neuralgraph.zoo.settings`: :class:`ZooSettings`, what a zoo is generated with.
* :mod:`~neuralgraph.zoo.files`: resumable zoo generation, zoo files, and
  :class:`ZooDataset` (targets, splits by network, PyG batches).
* :mod:`~neuralgraph.zoo.statnn`: StatNN (per-layer weight statistics +
  gradient-boosted trees) and Kendall's tau.
"""
from .files import (DATASETS, METRICS, ZOO_FORMAT, ZooDataset, concat_batches, generate_zoo, load_zoo_data,
                    load_zoo_file, write_zoo)
from .settings import ZooSettings
from .specs import (FAMILIES, mlp_classifier_architecture, sample_wild_park_architecture, sample_zoo,
                    small_cnn_architecture)
from .statnn import (STATNN_REGRESSORS, evaluate_statnn, fit_statnn, kendall_tau, statnn_features, tau_difference,
                     zoo_statnn_features)
from .train import forward_grouped, forward_vmap, train_group, train_plain

__all__ = [
    "DATASETS", "METRICS", "ZOO_FORMAT", "ZooDataset", "ZooSettings", "concat_batches", "generate_zoo", "write_zoo",
    "load_zoo_data",
    "load_zoo_file", "FAMILIES", "mlp_classifier_architecture", "sample_wild_park_architecture", "sample_zoo",
    "small_cnn_architecture", "STATNN_REGRESSORS", "evaluate_statnn", "fit_statnn", "kendall_tau", "tau_difference",
    "statnn_features", "zoo_statnn_features", "forward_grouped", "forward_vmap", "train_group", "train_plain",
]
