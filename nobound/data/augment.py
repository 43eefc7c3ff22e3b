"""Training-time augmentations of the paper (App. F.5), vectorised over the batch.

CIFAR-10 uses a random crop with 2 pixels of zero padding back to 32 x 32 plus a random
horizontal flip; TinyImageNet the same with 4 pixels of padding back to 64 x 64; MNIST and
Fashion-MNIST use none. Each example gets its own crop offset and flip, but the work is
one gather over the whole ``(N, C, H, W)`` batch, no per-image Python loop, on whichever
array module holds the batch (:func:`nobound.backend.get_array_module`): NumPy or CuPy.

Randomness is drawn on the host from a NumPy generator (a few integers per image) and only
the resulting indices are moved to the device, so a given generator state produces the
same augmented batch on CPU and GPU. :class:`~nobound.data.loader.BatchLoader` derives
that generator from ``(seed, epoch, batch)``, which makes augmentation reproducible and
resumable.

Apply augmentations to pixels in ``[0, 1]`` (or uint8), *before* normalisation, so that
the zero padding is black as in torchvision's ``RandomCrop(size, padding)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module, random_stream


def _as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return random_stream(int(rng), name="augment")


def crop_at(x: Any, padding: int, dy: Any, dx: Any) -> Any:
    """Zero-pad every image by ``padding`` and cut an ``H x W`` window at ``(dy, dx)``.

    ``x`` is ``(N, C, H, W)``; ``dy``/``dx`` are ``(N,)`` integer offsets in
    ``[0, 2 * padding]`` (``padding`` means "no shift"). Image ``i`` of the result equals
    ``pad(x)[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W]``.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    if padding == 0:
        return x.copy()
    padded = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dy = xp.asarray(dy, dtype=xp.int64)
    dx = xp.asarray(dx, dtype=xp.int64)
    rows = dy[:, None] + xp.arange(h)[None, :]
    cols = dx[:, None] + xp.arange(w)[None, :]
    return padded[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def flip_where(x: Any, mask: Any) -> Any:
    """Mirror (left-right) the images whose ``mask`` entry is true; an involution."""
    xp = get_array_module(x)
    mask = xp.asarray(mask, dtype=bool).reshape(-1, 1, 1, 1)
    return xp.where(mask, x[..., ::-1], x)


def random_crop(x: Any, padding: int, rng: np.random.Generator | int) -> Any:
    """Random translation by up to ``padding`` pixels with zero fill (crop of the padded
    image back to the original size), independently per image."""
    offsets = _as_generator(rng).integers(0, 2 * padding + 1, size=(2, x.shape[0]))
    return crop_at(x, padding, offsets[0], offsets[1])


def random_flip(x: Any, rng: np.random.Generator | int, p: float = 0.5) -> Any:
    """Horizontally flip each image independently with probability ``p``."""
    return flip_where(x, _as_generator(rng).random(x.shape[0]) < p)


@dataclass(frozen=True)
class Augmentation:
    """Random crop with ``padding`` pixels of zero padding (0: none), then an optional
    random horizontal flip. Call it as ``aug(batch, rng)``.

    The generator is consumed in a fixed order: ``2 N`` crop offsets (only if
    ``padding > 0``), then ``N`` flip draws (only if ``flip``).
    """

    padding: int = 0
    flip: bool = False

    @property
    def is_identity(self) -> bool:
        return self.padding == 0 and not self.flip

    def __call__(self, x: Any, rng: np.random.Generator | int) -> Any:
        rng = _as_generator(rng)
        if self.padding:
            x = random_crop(x, self.padding, rng)
        if self.flip:
            x = random_flip(x, rng)
        return x


#: Named augmentations; the dataset specs refer to these by name.
AUGMENTATIONS: dict[str, Augmentation] = {
    "none": Augmentation(),
    "cifar10": Augmentation(padding=2, flip=True),
    "tinyimagenet": Augmentation(padding=4, flip=True),
}


def get_augmentation(name: str) -> Augmentation:
    """The augmentation registered as ``name`` ("none", "cifar10", "tinyimagenet")."""
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation {name!r}; available: "
                         f"{', '.join(AUGMENTATIONS)}") from None


def default_augmentation(dataset: str) -> Augmentation:
    """The paper's training augmentation for ``dataset`` (identity for MNIST-like sets)."""
    from .specs import get_spec

    return get_augmentation(get_spec(dataset).default_augmentation)
