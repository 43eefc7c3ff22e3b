"""Module: a layer that owns named parameters and evaluates functionally.

Every layer's ``forward(x, params)`` takes its parameters explicitly (a mapping from
local names such as ``"weight"`` to Tensors). Called without ``params`` it uses its own.
This one convention serves every use of a network:

* training evaluates ``model(x)`` with its own parameters;
* RGS and PGPE pass *perturbed* parameters with a leading population axis P, e.g. a
  Linear weight of shape (P, out, in), and get P outputs from one batched call;
* the relaxations in :mod:`nobound.bounds` read the same parameters layer by layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from nobound.autodiff.tensor import Tensor


class Module:
    """Base class: parameters (trainable Tensors) and buffers (plain arrays)."""

    parameter_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.training = True

    # ------------------------------------------------------------ evaluation
    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Any, params: Mapping[str, Tensor] | None = None) -> Tensor:
        return self.forward(x if isinstance(x, Tensor) else Tensor(x), params)

    def own_parameters(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.parameter_names}

    def resolve(self, params: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        """The parameters to use: the given ones, falling back to the layer's own.

        A name the layer does not have is an error, not ignored: a misspelt name would
        otherwise silently evaluate the layer's own parameters instead of the given ones.
        """
        own = self.own_parameters()
        if params:
            unknown = sorted(set(params) - set(own))
            if unknown:
                raise KeyError(f"{type(self).__name__} has no parameters {unknown}; "
                               f"its parameters are {sorted(own)}")
            own.update(params)
        return own

    # ------------------------------------------------------------ bookkeeping
    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        yield from self.own_parameters().items()

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        for name in self.buffer_names:
            yield name, getattr(self, name)

    def state_dict(self) -> dict[str, Any]:
        """Parameters and buffers as arrays, under PyTorch-style names (``0.weight``)."""
        state = {name: p.data for name, p in self.named_parameters()}
        state.update(dict(self.named_buffers()))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy arrays into parameters and buffers; names and shapes must match exactly."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise KeyError(f"state mismatch: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            if tuple(value.shape) != tuple(expected[name].shape):
                raise ValueError(f"{name}: shape {tuple(value.shape)} ≠ expected "
                                 f"{tuple(expected[name].shape)}")
        self._assign(state)

    def _assign(self, state: Mapping[str, Any]) -> None:
        for name in self.parameter_names:
            param = getattr(self, name)
            param.data = param.xp.asarray(state[name], dtype=param.dtype).copy()
        for name in self.buffer_names:
            old = getattr(self, name)
            xp = Tensor(old).xp
            setattr(self, name, xp.asarray(state[name], dtype=old.dtype).copy())

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: str) -> Module:
        """Move parameters and buffers to ``"cpu"`` or ``"cuda"`` (explicit transfer)."""
        from nobound.backend import to_device

        for _, param in self.named_parameters():
            param.data = to_device(param.data, device)
        for name, value in list(self.named_buffers()):
            self._set_buffer(name, to_device(value, device))
        return self

    def _set_buffer(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    def astype(self, dtype: Any) -> Module:
        """Cast parameters and floating buffers (counters such as num_batches_tracked stay
        integers)."""
        for _, param in self.named_parameters():
            param.data = param.data.astype(dtype)
        for name, value in list(self.named_buffers()):
            if value.dtype.kind == "f":
                self._set_buffer(name, value.astype(dtype))
        return self

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
