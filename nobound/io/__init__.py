"""Reading and writing models: checkpoints (h5py, atomic), ONNX, VNNLIB.

Only the checkpoint API is imported here; ONNX support lives in
:mod:`nobound.io.onnx_import` / :mod:`nobound.io.onnx_export` (optional extra ``onnx``).
"""

from nobound.io.architecture import build_model_from_description, describe_model
from nobound.io.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "Checkpoint", "CheckpointError", "build_model_from_description", "describe_model",
    "load_checkpoint", "save_checkpoint",
]
