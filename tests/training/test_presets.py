"""The App. F presets: their values, and that ``nobound train`` accepts every one."""

from __future__ import annotations

import pytest

from nobound.cli import build_parser
from nobound.training.presets import PRESETS, apply_preset, get_preset


def train_args(*flags: str):
    parser = build_parser()
    return parser.parse_args(["train", "--out", "unused", *flags])


def test_grad_and_rgs_presets_follow_appendix_f1_and_f3():
    mnist = get_preset("paper-mnist-0.1")
    assert (mnist["dataset"], mnist["eps"], mnist["epochs"]) == ("mnist", 0.1, 70)
    assert (mnist["optimizer"], mnist["lr"], mnist["lr_decay"]) == ("adam", 5e-5, 0.2)
    assert tuple(mnist["lr_milestones"]) == (50, 60)
    assert (mnist["eps_start_epoch"], mnist["eps_ramp_epochs"]) == (0, 20)
    assert mnist["init"] == "ibp" and mnist["arch"] == "cnn3"
    assert (mnist["population_size"], mnist["sigma"], mnist["sigma_factor"]) == (2, 1e-3, 0.4)
    assert get_preset("paper-mnist-0.3")["eps"] == 0.3
    cifar = get_preset("paper-cifar-2/255")
    assert (cifar["epochs"], tuple(cifar["lr_milestones"])) == (160, (120, 140))
    assert (cifar["eps_start_epoch"], cifar["eps_ramp_epochs"]) == (1, 80)  # first epoch eps=0
    assert cifar["eps"] == pytest.approx(2 / 255)
    assert get_preset("paper-cifar-8/255")["eps"] == pytest.approx(8 / 255)


def test_pgpe_presets_follow_appendix_f2():
    for name, dataset, batch, eps, ramp in [
            ("paper-pgpe-mnist-0.1", "mnist", 512, 0.1, 0),
            ("paper-pgpe-mnist-0.3", "mnist", 512, 0.3, 50),
            ("paper-pgpe-cifar-2/255", "cifar10", 128, 2 / 255, 0),
            ("paper-pgpe-cifar-8/255", "cifar10", 128, 8 / 255, 50)]:
        preset = get_preset(name)
        assert (preset["method"], preset["dataset"], preset["batch_size"]) == \
            ("pgpe", dataset, batch)
        assert preset["eps"] == pytest.approx(eps) and preset["eps_ramp_epochs"] == ramp
        assert (preset["epochs"], preset["lr"], preset["lr_decay"]) == (150, 3e-4, 0.4)
        assert tuple(preset["lr_milestones"]) == (110, 130)
        assert (preset["population_size"], preset["sigma"]) == (256, 1e-3)
        assert preset["warm_start"] == "pgd"
    alpha = get_preset("paper-alpha-crown-pgpe-mnist-0.1")
    assert (alpha["arch"], alpha["relaxation"]) == ("cnn3_tiny", "alpha-crown")
    assert (alpha["alpha_steps"], alpha["alpha_step_size"], alpha["alpha_init"]) == (1, 0.5, 0.5)
    assert get_preset("paper-pgpe-mnist") == get_preset("paper-pgpe-mnist-0.1")
    with pytest.raises(ValueError):
        get_preset("paper-imagenet")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_key_is_a_train_flag_and_builds_its_method(name):
    from nobound.training.method import get_method_class

    preset = get_preset(name)
    relaxation = preset.get("relaxation", "deeppoly")
    flags = ("--relaxation", relaxation) if preset["method"] != "pgd" else ()
    args = train_args("--preset", name, *flags)
    apply_preset(args)
    for key, value in preset.items():
        if key != "warm_start":
            expected = list(value) if isinstance(value, tuple) else value
            assert getattr(args, key) == expected, key
    options = get_method_class(args.method).options_from_args(args)
    if args.method == "pgpe":
        assert options["population_size"] == 256 and options["stdev_init"] == 1e-3
    if args.relaxation == "alpha-crown":
        assert options["bound_options"] == {"alpha_steps": 1, "alpha_step_size": 0.5,
                                            "alpha_init": 0.5}


def test_explicit_flags_override_the_preset_and_warm_start_is_noted():
    # --relaxation ibp and --batch-size 128 are the parser's defaults, given explicitly
    args = train_args("--batch-size", "128", "--preset", "paper-pgpe-mnist-0.1",
                      "--epochs", "2", "--population-size", "8", "--relaxation", "ibp")
    notes = apply_preset(args)
    assert (args.epochs, args.population_size, args.relaxation) == (2, 8, "ibp")
    assert args.batch_size == 128
    assert args.lr == 3e-4 and args.method == "pgpe"
    assert any("--init-from" in note for note in notes)
    args = train_args("--preset", "paper-pgpe-mnist-0.1", "--init-from", "pgd/model.h5",
                      "--relaxation", "deeppoly")
    assert apply_preset(args) == []


@pytest.mark.parametrize("method", ["grad", "rgs"])
def test_a_certified_preset_without_a_relaxation_in_its_name_needs_the_flag(method):
    """No row trains with IBP silently: paper-mnist-0.1 names no relaxation."""
    with pytest.raises(ValueError, match="--relaxation"):
        apply_preset(train_args("--preset", "paper-mnist-0.1", "--method", method))
    with pytest.raises(ValueError, match="--relaxation"):
        apply_preset(train_args("--preset", "paper-pgpe-mnist-0.1"))
    args = train_args("--preset", "paper-mnist-0.1", "--method", method,
                      "--relaxation", "deeppoly")
    apply_preset(args)
    assert (args.method, args.relaxation) == (method, "deeppoly")
    args = train_args("--preset", "paper-alpha-crown-pgpe-mnist-0.1")  # named: allowed
    apply_preset(args)
    assert args.relaxation == "alpha-crown"


def test_pgd_preset_is_the_warm_start_of_appendix_f2():
    """F.1's schedule with Kaiming init (F.1: PGD uses Kaiming) and CTBench's attack."""
    pgd = get_preset("paper-pgd-mnist")
    assert (pgd["method"], pgd["init"], pgd["eps"], pgd["epochs"]) == ("pgd", "kaiming", 0.1, 70)
    assert (pgd["attack_steps"], pgd["attack_restarts"]) == (10, 1)
    assert tuple(pgd["lr_milestones"]) == (50, 60) and pgd["eps_ramp_epochs"] == 20
    args = train_args("--preset", "paper-pgd-mnist-0.1")
    apply_preset(args)  # PGD needs no relaxation
    assert args.method == "pgd" and args.attack_steps == 10
