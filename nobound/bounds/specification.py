"""Specifications: a matrix C over the network outputs, bounded instead of the logits.

Robustness of sample (x, t) means y_t − y_j > 0 for every j ≠ t and every x' in the
region. With the K = classes − 1 margin rows

    C[j', :] = e_t − e_j      (j ≠ t, in ascending j)

the property is ``lower(C · f(x')) > 0``. Bounding C · f directly is tighter than
subtracting logit bounds, and cheap: if the network ends in y = W v + b, then

    C y = (C W) v + C b = W' v + b'                                       (spec folding)

so C is *folded* into the last Linear layer (as CTBench and auto_LiRPA do) and every
relaxation bounds the logit differences directly. With a population of weights
(P, classes, in) the folded weight is (P, B, K, in): one specification per sample.
"""

from __future__ import annotations

from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import default_dtype, get_array_module, unwrap


def margin_spec(targets: Any, num_classes: int, dtype: Any = None) -> Any:
    """C of shape (B, classes − 1, classes): row j' = e_target − e_j for the j ≠ target.

    Rows are in ascending j, skipping the target (the order auto_LiRPA and CTBench use).
    Returned as a plain array (NumPy or CuPy, following ``targets``).
    """
    targets = unwrap(targets)
    xp = get_array_module(targets)
    targets = xp.asarray(targets).reshape(-1).astype(xp.int64)
    if num_classes < 2:
        raise ValueError(f"a margin specification needs ≥ 2 classes, got {num_classes}")
    if targets.size and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes}), got {targets.tolist()}")
    dtype = dtype or default_dtype()
    batch = targets.shape[0]
    others = xp.arange(num_classes - 1)[None, :]  # the j' index of each row
    # row j' compares with class j = j' for j' < t and j = j' + 1 for j' ≥ t
    compared = others + (others >= targets[:, None])
    spec = xp.zeros((batch, num_classes - 1, num_classes), dtype=dtype)
    rows = xp.arange(num_classes - 1)
    batch_index = xp.arange(batch)[:, None]
    spec[batch_index, rows[None, :], targets[:, None]] = 1
    spec[batch_index, rows[None, :], compared] = -1
    return spec


def as_spec_tensor(spec: Any, batch_size: int, num_outputs: int, like: Tensor) -> Tensor:
    """Validate C and bring it to (B, K, outputs) on ``like``'s device and dtype.

    A 2-d C (K, outputs) is shared by every batch element.
    """
    array = unwrap(spec)
    tensor = spec if isinstance(spec, Tensor) else Tensor(like.xp.asarray(array,
                                                                          dtype=like.dtype))
    if tensor.dtype != like.dtype:
        tensor = Tensor(tensor.data.astype(like.dtype))
    if tensor.ndim == 2:
        tensor = ops.broadcast_to(tensor.reshape(1, *tensor.shape),
                                  (batch_size, *tensor.shape))
    if tensor.ndim != 3 or tensor.shape[0] != batch_size or tensor.shape[2] != num_outputs:
        raise ValueError(f"spec must be (B={batch_size}, K, outputs={num_outputs}) or "
                         f"(K, outputs), got {tuple(tensor.shape)}")
    return tensor


def fold_spec(weight: Tensor, bias: Tensor | None, spec: Tensor) -> tuple[Tensor, Tensor]:
    """W' = C W and b' = C b for a Linear layer with canonical weight (P', out, in).

    ``spec`` is (B, K, out). Returns W' of shape (P', B, K, in) and b' of shape (P', B, K):
    a per-sample affine layer that maps v directly to the specification C · (W v + b).
    """
    folded_weight = ops.matmul(spec.reshape(1, *spec.shape),
                               weight.reshape(weight.shape[0], 1, *weight.shape[1:]))
    if bias is None:
        folded_bias = Tensor(weight.xp.zeros(folded_weight.shape[:-1], dtype=weight.dtype))
    else:
        folded_bias = ops.matmul(spec.reshape(1, *spec.shape),
                                 bias.reshape(bias.shape[0], 1, bias.shape[1], 1))
        folded_bias = folded_bias.reshape(folded_bias.shape[:-1])
    return folded_weight, folded_bias
