"""nobound: a transparent, framework-free engine for certified robustness (NumPy/CuPy)."""

from nobound.autodiff import Tensor, no_grad

__version__ = "0.1.0"
__all__ = ["Tensor", "__version__", "no_grad"]
