"""Layers, initialisations and the model zoo."""

from nobound.nn.activation import Flatten, ReLU, Sigmoid, Tanh
from nobound.nn.init import ibp_init, initialise, kaiming_uniform
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.module import Module
from nobound.nn.normalization import BatchNorm, Normalize, reset_batchnorm_statistics
from nobound.nn.pooling import MaxPool2d
from nobound.nn.sequential import Sequential
from nobound.nn.zoo import ARCHITECTURES, build_model, conv_net, fc_net

__all__ = [
    "ARCHITECTURES", "BatchNorm", "Conv2d", "Flatten", "Linear", "MaxPool2d", "Module",
    "Normalize", "ReLU", "Sequential", "Sigmoid", "Tanh", "build_model", "conv_net",
    "fc_net", "ibp_init", "initialise", "kaiming_uniform", "reset_batchnorm_statistics",
]
