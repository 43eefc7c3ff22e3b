"""Sequential: layers applied in order, parameters named ``"<index>.<name>"`` as PyTorch."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from nobound.autodiff.tensor import Tensor
from nobound.nn.module import Module


def split_parameters(params: Mapping[str, Tensor] | None, index: int) -> dict[str, Tensor]:
    """The entries of ``params`` that belong to layer ``index``, with the prefix removed."""
    if not params:
        return {}
    prefix = f"{index}."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


class Sequential(Module):
    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.layers = list(layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        if params:  # names of parameter-free layers or missing indices would be ignored
            unknown = sorted(set(params) - {name for name, _ in self.named_parameters()})
            if unknown:
                raise KeyError(f"the model has no parameters {unknown}")
        for index, layer in enumerate(self.layers):
            x = layer.forward(x, split_parameters(params, index))
        return x

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        for index, layer in enumerate(self.layers):
            for name, param in layer.named_parameters():
                yield f"{index}.{name}", param

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        for index, layer in enumerate(self.layers):
            for name, value in layer.named_buffers():
                yield f"{index}.{name}", value

    def _set_buffer(self, name: str, value: Any) -> None:
        index, local = name.split(".", 1)
        self.layers[int(index)]._set_buffer(local, value)

    def _assign(self, state: Mapping[str, Any]) -> None:
        for index, layer in enumerate(self.layers):
            layer._assign({k[len(f"{index}."):]: v for k, v in state.items()
                           if k.startswith(f"{index}.")})

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"
