"""Every differentiable primitive of nobound, importable as ``nobound.autodiff.ops.<name>``."""

from nobound.autodiff.ops.conv import conv2d, conv_transpose2d, output_size
from nobound.autodiff.ops.elementwise import (
    abs,
    add,
    clamp,
    div,
    exp,
    log,
    maximum,
    minimum,
    mul,
    neg,
    negative_part,
    positive_part,
    relu,
    sqrt,
    square,
    sub,
    where,
)
from nobound.autodiff.ops.linalg import einsum, matmul
from nobound.autodiff.ops.reductions import batch_statistics, logsumexp, max, mean, sum
from nobound.autodiff.ops.shape import (
    broadcast_to,
    concatenate,
    flatten,
    gather,
    getitem,
    pad,
    reshape,
    stack,
    swapaxes,
    transpose,
)

__all__ = [
    "abs", "add", "batch_statistics", "broadcast_to", "clamp", "concatenate", "conv2d",
    "conv_transpose2d", "div", "einsum", "exp", "flatten", "gather", "getitem", "log",
    "logsumexp", "matmul", "max", "maximum", "mean", "minimum", "mul", "neg",
    "negative_part", "output_size", "pad", "positive_part", "relu", "reshape", "sqrt",
    "square", "stack", "sub", "sum", "swapaxes", "transpose", "where",
]
