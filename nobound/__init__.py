"""nobound: a transparent, framework-free engine for certified robustness (NumPy/CuPy)."""

from nobound.autodiff import Tensor, no_grad
from nobound.host_memory import tune_host_allocator

tune_host_allocator()  # reuse freed host memory across training steps (see host_memory)

__version__ = "0.1.0"
__all__ = ["Tensor", "__version__", "no_grad"]
