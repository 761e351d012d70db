"""mlpsearch engine: a verified, fast multi-layer perceptron in numpy (numpy + stdlib only)."""

from .activations import ACTIVATIONS, Activation, get_activation
from .gradcheck import gradcheck
from .initializers import INITIALIZERS, get_initializer
from .losses import softmax_cross_entropy
from .model import Model
from .network import MLP
from .optimizers import OPTIMIZERS, SCHEDULES, Optimizer, make_optimizer
from .scaling import Scaling
from .training import Diverged, EpochRecord, History, TrainConfig, Trainer, train

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "MLP",
    "Model",
    "OPTIMIZERS",
    "SCHEDULES",
    "Activation",
    "Diverged",
    "EpochRecord",
    "History",
    "Optimizer",
    "Scaling",
    "TrainConfig",
    "Trainer",
    "get_activation",
    "get_initializer",
    "gradcheck",
    "make_optimizer",
    "softmax_cross_entropy",
    "train",
]
