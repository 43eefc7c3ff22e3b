"""One model format across the command line: a ``.h5`` checkpoint or an ONNX file.

:func:`load_network` reads either into an :class:`~nobound.io.onnx_import.ImportedNetwork`
(the model, its input shape, its number of outputs, and for ONNX the input order of the
file and the graph it was checked against); :func:`save_network` writes either, chosen by
the suffix. A checkpoint written from an imported network keeps the file's input order in
its config (``input_order``), so ``export net.onnx --to net.h5`` and back loses nothing a
VNNLIB property relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nobound.io.onnx_import import ImportedNetwork

ONNX_SUFFIXES = (".onnx", ".onnx.gz")
CHECKPOINT_SUFFIXES = (".h5", ".hdf5")


def model_kind(path: str | Path) -> str:
    """"onnx" or "checkpoint" from the file name, else ValueError naming the suffixes."""
    name = str(path).lower()
    if name.endswith(ONNX_SUFFIXES):
        return "onnx"
    if name.endswith(CHECKPOINT_SUFFIXES):
        return "checkpoint"
    raise ValueError(f"{path}: unknown model format (expected "
                     f"{', '.join(ONNX_SUFFIXES + CHECKPOINT_SUFFIXES)})")


def _num_outputs(model: Any, input_shape: tuple[int, ...]) -> int:
    from nobound.autodiff.tensor import Tensor, no_grad
    from nobound.backend import to_numpy

    params = list(model.parameters())
    dtype = params[0].dtype if params else np.float64
    with no_grad():
        return int(to_numpy(model(Tensor(np.zeros((1, *input_shape), dtype))).data).shape[-1])


def load_network(path: str | Path, device: str = "cpu", dtype: Any = np.float64,
                 check_box: tuple[np.ndarray, np.ndarray] | None = None) -> ImportedNetwork:
    """The network in ``path`` (.h5 checkpoint or .onnx/.onnx.gz), in eval mode.

    ONNX files are imported in ``dtype`` and checked against their graph (on ``check_box``,
    file-ordered, when given); checkpoints keep their own dtype.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if model_kind(path) == "onnx":
        from nobound.io.onnx_import import import_onnx

        network = import_onnx(path, dtype=dtype, check_box=check_box)
    else:
        from nobound.io.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(path)
        shape = checkpoint.architecture.get("input_shape")
        if shape is None:
            raise ValueError(f"{path}: the checkpoint records no input shape")
        shape = tuple(int(n) for n in shape)
        order = checkpoint.config.get("input_order")
        network = ImportedNetwork(checkpoint.model, shape,
                                  _num_outputs(checkpoint.model, shape),
                                  None if order is None else np.asarray(order, np.int64))
    if device != "cpu":
        network.model.to(device)
    network.model.eval()
    return network


def save_network(network: ImportedNetwork, path: str | Path, name: str | None = None
                 ) -> Path:
    """Write ``network`` as ONNX or as a checkpoint, chosen by the suffix of ``path``.

    ONNX cannot say in which order a file's inputs fill the network, so a network with an
    ``input_order`` is refused there (its ONNX input would silently change meaning).
    """
    path = Path(path)
    if model_kind(path) == "onnx":
        if network.input_order is not None:
            raise ValueError("the network reads its input in a permuted order (an NHWC "
                             "file); exporting it to ONNX would change what X_i means")
        import gzip

        from nobound.io.onnx_export import to_onnx

        data = to_onnx(network.model, network.input_shape).SerializeToString()
        path.write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)
        return path
    from nobound.io.architecture import describe_model
    from nobound.io.checkpoint import save_checkpoint

    config = {} if network.input_order is None else \
        {"input_order": [int(i) for i in network.input_order]}
    return save_checkpoint(path, network.model,
                           architecture=describe_model(network.model, network.input_shape,
                                                       network.num_outputs, name),
                           config=config)


def load_model_checkpoint(path: str | Path, device: str = "cpu") -> Any:
    """A :class:`~nobound.io.checkpoint.Checkpoint` for a ``.h5`` file *or* an ONNX file.

    For the commands that read a checkpoint's model and metadata (``certify``,
    ``evaluate``): an ONNX network becomes a checkpoint without training metadata — its
    config is empty, so the dataset must be given with ``--dataset``.
    """
    from nobound.io.checkpoint import Checkpoint, load_checkpoint

    if model_kind(path) == "checkpoint":
        return load_checkpoint(path, device=device)
    network = load_network(path, device=device)
    architecture = {"input_shape": list(network.input_shape),
                    "num_classes": network.num_outputs, "name": Path(path).name}
    return Checkpoint(Path(path), network.model, architecture)


def initial_model(path: str | Path, model: Any, resumed: Any = None) -> Any:
    """The model ``train --init-from PATH`` trains: ``model`` with the weights of PATH when
    they fit its layers (a zoo network), else PATH's own network (any chain of supported
    layers, e.g. imported from ONNX), in ``model``'s dtype. When resuming, the network the
    checkpoint ``resumed`` rebuilt from its own description is used if ``model``'s layers
    do not fit it."""
    def fits(other: Any) -> bool:
        mine, theirs = model.state_dict(), other.state_dict()
        return mine.keys() == theirs.keys() and all(
            np.shape(mine[k]) == np.shape(theirs[k]) for k in mine)

    params = list(model.parameters())
    dtype = params[0].dtype if params else np.float32
    if resumed is not None:
        return model if fits(resumed.model) else resumed.model
    source = load_network(path, dtype=dtype).model
    if fits(source):
        model.load_state_dict(source.state_dict())
        return model
    source.astype(dtype)
    return source
