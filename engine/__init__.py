"""mlpsearch engine: a verified, fast multi-layer perceptron in numpy (numpy + stdlib only)."""

from engine.activations import ACTIVATIONS, Activation, get_activation
from engine.data import DataError, Dataset, load_dataset
from engine.gradcheck import gradcheck
from engine.initializers import INITIALIZERS, get_initializer
from engine.losses import softmax_cross_entropy
from engine.network import MLP
from engine.optimizers import OPTIMIZERS, SCHEDULES, Optimizer, make_optimizer
from engine.training import Diverged, EpochRecord, History, TrainConfig, Trainer, train

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "MLP",
    "OPTIMIZERS",
    "SCHEDULES",
    "Activation",
    "DataError",
    "Dataset",
    "Diverged",
    "EpochRecord",
    "History",
    "Optimizer",
    "TrainConfig",
    "Trainer",
    "get_activation",
    "get_initializer",
    "gradcheck",
    "load_dataset",
    "make_optimizer",
    "softmax_cross_entropy",
    "train",
]
