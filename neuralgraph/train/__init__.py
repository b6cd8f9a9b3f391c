"""Training classifiers on INR datasets (single process or torchrun DDP), with baselines."""
from .baselines import FlatMLP, flat_params, num_params
from .checkpoint import load_checkpoint, save_checkpoint
from .registry import MODELS, available_models, build_model
from ..deprecation import forward_moved
from .trainer import (DEFAULT_MODEL, RunMismatch, TrainConfig, TrainResult, evaluate_classifier, load_splits,
                      load_trained, resolve_device, train)

__all__ = [
    "FlatMLP", "flat_params", "num_params", "load_checkpoint", "save_checkpoint",
    "MODELS", "available_models", "build_model",
    "DEFAULT_MODEL", "TrainConfig", "TrainResult", "evaluate_classifier", "load_splits", "load_trained", "train",
    "RunMismatch", "resolve_device",
]

#: ``evaluate`` was the trainer's classifier evaluation; ``neuralgraph.inference.evaluate`` evaluates a run.
__getattr__ = forward_moved(__name__, {"evaluate": "neuralgraph.train.trainer:evaluate_classifier"})
