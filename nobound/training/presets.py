"""Named hyperparameter sets reproducing App. F (``nobound train --preset NAME``).

Every value is a training hyperparameter under the name of its ``nobound train`` flag
(``lr_milestones`` ↔ ``--lr-milestones``); flags given explicitly override the preset.
``warm_start: "pgd"`` is the one entry that is not a flag: App. F.2 starts PGPE from a
PGD-trained network, which ``--init-from`` names (the CLI reminds you when it is missing).
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
* PGD (the warm start of F.2, whose settings the paper does not state): F.1's MNIST/CIFAR
  schedule (Adam, 70/160 epochs, ×0.2 at the same milestones, the same eps ramp) with
  Kaiming uniform initialisation (F.1: "for PGD training … Kaiming uniform"), and CTBench's
  PGD training attack (10 steps, one restart, cross-entropy, relative step 0.2), lr 5·10⁻⁴
  and clipping at 10 as CTBench's defaults. ``paper-pgd-mnist-0.1`` then
  ``--init-from <run>/model.h5`` with ``paper-pgpe-mnist-0.1`` is the whole F.2 recipe.

A preset never chooses the relaxation silently: a certified method (grad, rgs, pgpe) run
from a preset whose name does not say its relaxation needs ``--relaxation`` on the command
line, so no row of a table trains with IBP by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_GRAD_COMMON: dict[str, Any] = {
    "method": "grad", "arch": "cnn3", "optimizer": "adam", "lr": 5e-5, "lr_decay": 0.2,
    "eps_ramp": "smoothed", "eps_ramp_exponent": 4.0, "eps_ramp_mid": 0.25,
    "init": "ibp", "grad_clip": 10.0, "population_size": 2, "sigma": 1e-3,
    "sigma_factor": 0.4, "robust_weight": 1.0, "l1": 0.0,
}
_MNIST_GRAD = {**_GRAD_COMMON, "dataset": "mnist", "epochs": 70, "batch_size": 256,
               "lr_milestones": (50, 60), "eps_start_epoch": 0, "eps_ramp_epochs": 20}
_CIFAR_GRAD = {**_GRAD_COMMON, "dataset": "cifar10", "epochs": 160, "batch_size": 128,
               "lr_milestones": (120, 140), "eps_start_epoch": 1, "eps_ramp_epochs": 80}

_PGPE_COMMON: dict[str, Any] = {
    "method": "pgpe", "arch": "cnn3", "relaxation": "deeppoly", "epochs": 150, "lr": 3e-4,
    "lr_milestones": (110, 130), "lr_decay": 0.4, "grad_clip": 0.0, "eps_ramp": "smoothed",
    "eps_ramp_exponent": 4.0, "eps_ramp_mid": 0.25, "eps_start_epoch": 0,
    "population_size": 256, "sigma": 1e-3, "pgpe_optimizer": "clipup",
    "pgpe_ranking": "centered", "stdev_learning_rate": 0.1, "stdev_max_change": 0.2,
    "clipup_momentum": 0.9, "init": "kaiming", "warm_start": "pgd", "robust_weight": 1.0,
    "l1": 0.0,
}

_PGD_COMMON: dict[str, Any] = {
    "method": "pgd", "arch": "cnn3", "optimizer": "adam", "lr": 5e-4, "lr_decay": 0.2,
    "eps_ramp": "smoothed", "eps_ramp_exponent": 4.0, "eps_ramp_mid": 0.25,
    "init": "kaiming", "grad_clip": 10.0, "attack_steps": 10, "attack_restarts": 1,
    "attack_step_size": 0.2,
}

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "paper-pgd-mnist-0.1": MappingProxyType({
        **_PGD_COMMON, "dataset": "mnist", "eps": 0.1, "epochs": 70, "batch_size": 256,
        "lr_milestones": (50, 60), "eps_start_epoch": 0, "eps_ramp_epochs": 20}),
    "paper-pgd-mnist-0.3": MappingProxyType({
        **_PGD_COMMON, "dataset": "mnist", "eps": 0.3, "epochs": 70, "batch_size": 256,
        "lr_milestones": (50, 60), "eps_start_epoch": 0, "eps_ramp_epochs": 20}),
    "paper-pgd-cifar-2/255": MappingProxyType({
        **_PGD_COMMON, "dataset": "cifar10", "eps": 2 / 255, "epochs": 160, "batch_size": 128,
        "lr_milestones": (120, 140), "eps_start_epoch": 1, "eps_ramp_epochs": 80}),
    "paper-pgd-cifar-8/255": MappingProxyType({
        **_PGD_COMMON, "dataset": "cifar10", "eps": 8 / 255, "epochs": 160, "batch_size": 128,
        "lr_milestones": (120, 140), "eps_start_epoch": 1, "eps_ramp_epochs": 80}),
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

#: ``paper-pgpe-mnist`` etc.: the small-eps setting of each dataset.
ALIASES = MappingProxyType({"paper-pgpe-mnist": "paper-pgpe-mnist-0.1",
                            "paper-pgpe-cifar": "paper-pgpe-cifar-2/255",
                            "paper-pgd-mnist": "paper-pgd-mnist-0.1",
                            "paper-pgd-cifar": "paper-pgd-cifar-2/255"})

#: Methods that bound the network with a relaxation (``--relaxation``).
CERTIFIED_METHODS = ("grad", "rgs", "pgpe")
_RELAXATION_NAMES = ("alpha-crown", "crown-ibp", "deeppoly", "hbox", "ibp")


def relaxation_in_name(name: str) -> str | None:
    """The relaxation a preset's name states (``paper-alpha-crown-pgpe-…``), if any."""
    for relaxation in _RELAXATION_NAMES:  # longest names first: crown-ibp before ibp
        if relaxation in name:
            return relaxation
    return None


def get_preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name`` (aliases resolved); raises ValueError listing the names."""
    name = ALIASES.get(name, name)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from "
                         f"{sorted(PRESETS) + sorted(ALIASES)}")
    return dict(PRESETS[name])


# ---------------------------------------------------------------------- command line
def add_arguments(parser: Any) -> None:
    """``--preset``, the eps ramp flags and ``--init-from`` of ``nobound train``."""
    group = parser.add_argument_group("App. F schedules and presets")
    group.add_argument("--preset", help="named App. F hyperparameters, overridden by flags "
                                        f"given explicitly: {', '.join(PRESETS)}")
    group.add_argument("--eps-ramp", default="constant",
                       choices=("constant", "smoothed", "linear"),
                       help="eps annealing: constant eps, Shi et al.'s smoothed ramp "
                            "(polynomial then linear) or linear (default %(default)s)")
    group.add_argument("--eps-start-epoch", type=int, default=0,
                       help="epochs at eps = 0 before the ramp (default %(default)s)")
    group.add_argument("--eps-ramp-epochs", type=int, default=0,
                       help="epochs of the ramp from 0 to --eps (default %(default)s)")
    group.add_argument("--eps-ramp-exponent", type=float, default=4.0,
                       help="exponent of the smoothed ramp's polynomial part (default "
                            "%(default)s)")
    group.add_argument("--eps-ramp-mid", type=float, default=0.25,
                       help="fraction of the ramp spent on the polynomial part (default "
                            "%(default)s)")
    group.add_argument("--init-from",
                       help="start from the weights of this checkpoint (App. F.2 warm "
                            "start from a PGD-trained model.h5)")
    track_explicit_flags(parser)


def track_explicit_flags(parser: Any) -> None:
    """Make every option of ``parser`` record its dest in ``namespace.explicit_flags`` when
    it appears on the command line, so a preset fills exactly the flags *not* given — even
    a flag given with its default value (``--relaxation ibp`` must beat a preset's deeppoly).
    argparse calls an action only for arguments actually present; defaults bypass it."""
    for action in parser._actions:
        original = type(action)
        if getattr(original, "records_explicit", False):
            continue

        def call(self: Any, parser: Any, namespace: Any, values: Any,
                 option_string: Any = None, _original: type = original) -> None:
            namespace.__dict__.setdefault("explicit_flags", set()).add(self.dest)
            _original.__call__(self, parser, namespace, values, option_string)

        action.__class__ = type(original.__name__, (original,),
                                {"__call__": call, "records_explicit": True})


def apply_preset(args: Any) -> list[str]:
    """Fill ``args`` from ``--preset`` wherever the flag was not given explicitly.

    Returns notes for the user (e.g. the warm start App. F.2 expects).
    """
    if not getattr(args, "preset", None):
        return []
    explicit = getattr(args, "explicit_flags", set())
    preset = get_preset(args.preset)
    method = args.method if "method" in explicit else preset.get("method", args.method)
    if method in CERTIFIED_METHODS and "relaxation" not in explicit and \
            relaxation_in_name(args.preset) is None:
        raise ValueError(f"preset {args.preset} trains with --method {method}: name the "
                         f"relaxation with --relaxation ({', '.join(_RELAXATION_NAMES)})")
    notes = []
    for key, value in preset.items():
        if key == "warm_start":
            if not getattr(args, "init_from", None):
                notes.append(f"preset {args.preset} starts from a {value}-trained network "
                             f"(App. F.2): pass --init-from <{value} run>/model.h5")
            continue
        if not hasattr(args, key):
            raise ValueError(f"preset {args.preset}: no flag for {key!r}")
        if key not in explicit:
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    return notes


def eps_ramp_from_args(args: Any) -> dict[str, Any]:
    """The eps schedule options stored in the run configuration."""
    from nobound.training.schedules import EpsilonRamp

    length = 0 if args.eps_ramp == "constant" else args.eps_ramp_epochs
    kind = "smoothed" if args.eps_ramp == "constant" else args.eps_ramp
    return EpsilonRamp(args.eps, args.eps_start_epoch, length, kind, args.eps_ramp_exponent,
                       args.eps_ramp_mid).options()
