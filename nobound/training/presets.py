"""Named hyperparameter sets reproducing App. F (``nobound train --preset NAME``).

Every value is a training hyperparameter under the name of its ``nobound train`` flag
(``lr_milestones`` ↔ ``--lr-milestones``); flags given explicitly override the preset.
Sources, in order of precedence: the paper's App. F (F.1 GRAD, F.2 PGPE, F.3 RGS, §4.1);
where the paper defers to Shi et al. (2021) without numbers — batch size, gradient clipping,
the ramp's shape — their published settings (CTBench's batch sizes for CIFAR-10).

* GRAD / RGS (F.1, F.3): Adam, lr 5·10⁻⁵ (as printed in F.1; Shi et al.'s own scripts use
  5·10⁻⁴), ×0.2 after epochs 50, 60 (MNIST, 70 epochs) or 120, 140 (CIFAR-10, 160 epochs);
  eps ramp over the first 20 (MNIST) or 80 (CIFAR-10, after one epoch at eps = 0) epochs,
  Shi et al.'s smoothed ramp (exponent 4, switch to linear at 25 %); IBP initialisation;
  clipping at 10; RGS: n_ps = 2, σ = 10⁻³, ×0.4 at the lr milestones.
* PGPE (F.2, §4.1): 150 epochs, batch 512 (MNIST) / 128 (CIFAR-10), centre lr 3·10⁻⁴ ×0.4
  after epochs 110, 130, eps ramp over 50 epochs only for the large eps (0.3, 8/255), n_ps
  = 256, σ_init = 10⁻³, warm start from a PGD-trained network; evotorch's PGPE defaults
  (ClipUp, centred ranks, stdev_max_change 0.2) since the paper trained with evotorch.
* alpha-CROWN + PGPE (F.2, §4.3, Table 2): CNN3-tiny, slopes initialised at 0.5 and one
  optimisation step of size 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_GRAD_COMMON: dict[str, Any] = {
    "method": "grad", "arch": "cnn3", "optimizer": "adam", "lr": 5e-5, "lr_factor": 0.2,
    "eps_ramp": "smoothed", "eps_ramp_exponent": 4.0, "eps_ramp_mid": 0.25,
    "init": "ibp", "clip_norm": 10.0, "population_size": 2, "sigma": 1e-3,
    "sigma_factor": 0.4, "robust_weight": 1.0, "l1": 0.0,
}
_MNIST_GRAD = {**_GRAD_COMMON, "dataset": "mnist", "epochs": 70, "batch_size": 256,
               "lr_milestones": (50, 60), "eps_start_epoch": 0, "eps_ramp_epochs": 20}
_CIFAR_GRAD = {**_GRAD_COMMON, "dataset": "cifar10", "epochs": 160, "batch_size": 128,
               "lr_milestones": (120, 140), "eps_start_epoch": 1, "eps_ramp_epochs": 80}

_PGPE_COMMON: dict[str, Any] = {
    "method": "pgpe", "arch": "cnn3", "relaxation": "deeppoly", "epochs": 150, "lr": 3e-4,
    "lr_milestones": (110, 130), "lr_factor": 0.4, "eps_ramp": "smoothed",
    "eps_ramp_exponent": 4.0, "eps_ramp_mid": 0.25, "eps_start_epoch": 0,
    "population_size": 256, "sigma": 1e-3, "pgpe_optimizer": "clipup",
    "pgpe_ranking": "centered", "stdev_learning_rate": 0.1, "stdev_max_change": 0.2,
    "clipup_momentum": 0.9, "init": "kaiming", "warm_start": "pgd", "robust_weight": 1.0,
    "l1": 0.0,
}

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "paper-mnist-0.1": MappingProxyType({**_MNIST_GRAD, "eps": 0.1}),
    "paper-mnist-0.3": MappingProxyType({**_MNIST_GRAD, "eps": 0.3}),
    "paper-cifar-2/255": MappingProxyType({**_CIFAR_GRAD, "eps": 2 / 255}),
    "paper-cifar-8/255": MappingProxyType({**_CIFAR_GRAD, "eps": 8 / 255}),
    "paper-pgpe-mnist-0.1": MappingProxyType({**_PGPE_COMMON, "dataset": "mnist",
                                              "eps": 0.1, "batch_size": 512,
                                              "eps_ramp_epochs": 0}),
    "paper-pgpe-mnist-0.3": MappingProxyType({**_PGPE_COMMON, "dataset": "mnist",
                                              "eps": 0.3, "batch_size": 512,
                                              "eps_ramp_epochs": 50}),
    "paper-pgpe-cifar-2/255": MappingProxyType({**_PGPE_COMMON, "dataset": "cifar10",
                                                "eps": 2 / 255, "batch_size": 128,
                                                "eps_ramp_epochs": 0}),
    "paper-pgpe-cifar-8/255": MappingProxyType({**_PGPE_COMMON, "dataset": "cifar10",
                                                "eps": 8 / 255, "batch_size": 128,
                                                "eps_ramp_epochs": 50}),
    "paper-alpha-crown-pgpe-mnist-0.1": MappingProxyType({
        **_PGPE_COMMON, "dataset": "mnist", "arch": "cnn3_tiny", "relaxation": "alpha-crown",
        "eps": 0.1, "batch_size": 512, "eps_ramp_epochs": 0, "alpha_steps": 1,
        "alpha_step_size": 0.5, "alpha_init": 0.5}),
})

#: ``paper-pgpe-mnist`` etc.: the small-eps PGPE setting of each dataset.
ALIASES = MappingProxyType({"paper-pgpe-mnist": "paper-pgpe-mnist-0.1",
                            "paper-pgpe-cifar": "paper-pgpe-cifar-2/255"})


def get_preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name`` (aliases resolved); raises ValueError listing the names."""
    name = ALIASES.get(name, name)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from "
                         f"{sorted(PRESETS) + sorted(ALIASES)}")
    return dict(PRESETS[name])
