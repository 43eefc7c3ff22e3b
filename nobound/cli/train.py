"""``nobound train``: train a zoo network with a registered method, resumably.

    nobound train --arch cnn3 --dataset mnist --method standard --epochs 3 \\
        --batch-size 128 --lr 1e-3 --seed 0 --out runs/cnn3-std
    nobound train --out runs/cnn3-std --resume       # continue after an interruption

The run directory receives ``config.json``, ``log.jsonl``, ``checkpoint-<step>.h5`` and,
at the end, ``model.h5`` (evaluate it with ``nobound evaluate --model``). With
``--resume`` the configuration stored in the newest intact checkpoint is used (or, before
the first checkpoint, the run's ``config.json``, kept as it is), and training continues
bit-for-bit as if it had never stopped. A flag given with ``--resume`` that differs from
the stored run is refused; a truncated newest checkpoint is renamed ``*.corrupt`` and the
run resumes from the newest intact one; temporaries of a killed checkpoint write are
removed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nobound.cli import UsageError
from nobound.cli.common import (
    check_device,
    check_finite,
    check_non_negative,
    check_output_directory,
    check_positive,
    load_split,
    write_json,
)

#: Keys of the run configuration (stored in checkpoints as config["run"]).
RUN_KEYS = ("arch", "dataset", "method", "method_options", "batch_size", "init",
            "augmentation", "limit", "eval_limit", "dtype")
#: Keys added later (absent from older checkpoints): the eps ramp and the warm start.
OPTIONAL_RUN_KEYS = ("eps_schedule", "init_from", "normalize")
#: Flags stored in a run (config["run"] or config["trainer"] under the same name): given
#: with --resume, they must agree with the stored run.
STORED_FLAGS = ("arch", "dataset", "method", "batch_size", "init", "augmentation", "limit",
                "eval_limit", "dtype", "init_from", "epochs", "seed", "optimizer", "lr",
                "momentum", "lr_milestones", "lr_decay", "grad_clip", "eps", "log_every",
                "checkpoint_every", "keep_checkpoints", "micro_batch", "micro_batch_workers",
                "population_workers", "population_chunk", "population_memory", "bound_memory",
                "bound_patches")


def register(subparsers: Any) -> None:
    from nobound.nn.zoo import ARCHITECTURES
    from nobound.training.method import available_methods, get_method_class

    parser = subparsers.add_parser(
        "train", help="train a network (standard, PGD, or certified methods)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="cnn3",
                        help=f"architecture: {', '.join(ARCHITECTURES)} (default %(default)s)")
    parser.add_argument("--dataset", default="fashion-mnist-embedded",
                        help="mnist, fashion-mnist, cifar10, tinyimagenet or the offline "
                             "fashion-mnist-embedded (default %(default)s)")
    parser.add_argument("--data-dir", help="data root (default: $NOBOUND_DATA, then the "
                                           "download cache)")
    parser.add_argument("--method", default="standard",
                        help=f"training method: {', '.join(available_methods())} "
                             "(default %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="examples per step (default %(default)s)")
    parser.add_argument("--optimizer", default="adam", help="adam or sgd (default adam)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="initial learning rate (default %(default)s)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--lr-milestones", type=int, nargs="*", default=[],
                        help="epochs after which the lr is multiplied by --lr-decay")
    parser.add_argument("--lr-decay", type=float, default=0.2,
                        help="lr factor at each milestone (default %(default)s)")
    parser.add_argument("--grad-clip", type=float, default=0.0,
                        help="clip the global gradient norm to this value (0: off)")
    parser.add_argument("--eps", type=float, default=0.0,
                        help="l_inf training radius in pixel units [0, 1] (ignored by "
                             "standard training)")
    parser.add_argument("--init", default="kaiming", help="kaiming or ibp (default kaiming)")
    parser.add_argument("--normalize", default="auto", choices=("auto", "dataset", "none"),
                        help="input normalisation layer: 'dataset' puts Normalize(mean, std) "
                             "in front, 'none' trains on raw pixels; 'auto' follows App. F.5: "
                             "none for MNIST ('we do not apply any preprocessing'), the "
                             "dataset's mean and std otherwise (default %(default)s)")
    parser.add_argument("--augmentation", default="default",
                        help="'default' (the dataset's, App. F.5) or 'none'")
    parser.add_argument("--limit", type=int, help="train on the first N examples only")
    parser.add_argument("--eval-limit", type=int,
                        help="natural test accuracy after each epoch on the first N test "
                             "examples (default all; 0: skip)")
    parser.add_argument("--dtype", default="float32", help="float32 or float64")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random stream")
    parser.add_argument("--out", required=True, help="run directory (must be new or empty "
                                                     "unless --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in --out")
    parser.add_argument("--max-steps", type=int,
                        help="stop (with a checkpoint) after this many steps in total")
    parser.add_argument("--stop-after-epochs", type=int, metavar="N",
                        help="stop (with a checkpoint) at the end of epoch N of the full "
                             "schedule: part of a long run, same lr and eps schedules; "
                             "--resume continues it")
    parser.add_argument("--log-every", type=int, default=50, help="steps per log line")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="steps between checkpoints (0: only at epoch ends)")
    parser.add_argument("--keep-checkpoints", type=int, default=2,
                        help="newest checkpoints to keep (0: all)")
    add_execution_arguments(parser)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="evaluate PGPE/RGS populations on Ray: a local cluster, or the "
                             "one at ADDRESS (default $NOBOUND_RAY_ADDRESS); the run and its "
                             "checkpoints are the same as without")
    for name in available_methods():
        try:
            get_method_class(name).add_arguments(parser)
        except Exception:  # a broken plug-in must not break every other command
            continue
    from nobound.training import presets

    presets.add_arguments(parser)
    parser.set_defaults(func=run)


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the run's execution plan (TrainerConfig.execution_plan): how a step's
    work is cut to fit memory and spread over threads."""
    from nobound.bounds.plan import PATCH_MODES

    group = parser.add_argument_group(
        "execution plan (how a step's work is cut and spread; one plan for the whole run)")
    group.add_argument("--micro-batch", type=int, default=0,
                       help="compute each step over micro-batches of this many examples "
                            "and sum their weighted gradients: the same gradient in less "
                            "memory (BatchNorm then uses micro-batch statistics; not for "
                            "pgpe, which chunks its population instead). 0: off")
    group.add_argument("--micro-batch-workers", type=int,
                       help="threads computing micro-batches at once, the same gradient "
                            "bit for bit (default: cores / BLAS threads, e.g. 2 with "
                            "OPENBLAS_NUM_THREADS=1 on 2 cores; always 1 for rgs, which "
                            "puts its members on threads, and with a train-mode BatchNorm)")
    group.add_argument("--population-workers", type=int,
                       help="GLS: threads evaluating population chunks at once, RGS and "
                            "PGPE (default: cores / BLAS threads on the CPU, e.g. 2 with "
                            "OPENBLAS_NUM_THREADS=1 on 2 cores; 1 on a GPU or with a "
                            "train-mode BatchNorm)")
    group.add_argument("--population-chunk", type=int,
                       help="PGPE: members per batched call, even (default: fitted to "
                            "--population-memory)")
    group.add_argument("--population-memory", type=float,
                       help="PGPE: MB the population chunks in flight may use together "
                            "(default 134 (128 MiB) on the CPU, half the free GPU memory)")
    group.add_argument("--bound-memory", type=float,
                       help="MB per chunk of back-substitution rows in the certified "
                            "loss's bound (default 1074 (1 GiB); with gradients the graph "
                            "of every chunk is kept, so the peak is larger)")
    group.add_argument("--bound-patches", default="auto", choices=PATCH_MODES,
                       help="carry convolutional rows on their receptive-field patches: "
                            "where smaller than the maps (auto), always, or never "
                            "(default %(default)s)")


def trainer_config_from_args(args: argparse.Namespace) -> Any:
    from nobound.training.trainer import TrainerConfig

    return TrainerConfig(epochs=args.epochs, seed=args.seed, optimizer=args.optimizer,
                         lr=args.lr, momentum=args.momentum, lr_milestones=args.lr_milestones,
                         lr_decay=args.lr_decay, grad_clip=args.grad_clip, eps=args.eps,
                         log_every=args.log_every, checkpoint_every=args.checkpoint_every,
                         keep_checkpoints=args.keep_checkpoints,
                         micro_batch=args.micro_batch,
                         micro_batch_workers=args.micro_batch_workers,
                         population_workers=args.population_workers,
                         population_chunk=args.population_chunk,
                         population_memory=args.population_memory,
                         bound_memory=args.bound_memory, bound_patches=args.bound_patches)


def run_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from nobound.training.method import get_method_class
    from nobound.training.presets import eps_ramp_from_args

    method_class = get_method_class(args.method)
    return {"arch": args.arch, "dataset": args.dataset, "method": args.method,
            "method_options": method_class.options_from_args(args),
            "batch_size": args.batch_size, "init": args.init,
            "augmentation": args.augmentation, "limit": args.limit,
            "eval_limit": args.eval_limit, "dtype": args.dtype,
            "eps_schedule": eps_ramp_from_args(args), "init_from": args.init_from,
            "normalize": resolve_normalization(args.normalize, args.dataset)}


def resolve_normalization(choice: str, dataset: str) -> str:
    """``auto`` → App. F.5: no preprocessing for MNIST, the dataset's statistics otherwise."""
    if choice != "auto":
        return choice
    from nobound.data.specs import canonical_name

    try:
        return "none" if canonical_name(dataset) == "mnist" else "dataset"
    except ValueError as error:
        raise UsageError(str(error)) from None


def validate(args: argparse.Namespace) -> None:
    """Every check that needs no data (so it fails fast)."""
    from nobound.nn.init import INITIALISERS
    from nobound.nn.zoo import ARCHITECTURES

    check_non_negative("--eps", args.eps)
    check_positive("--epochs", args.epochs)
    check_positive("--batch-size", args.batch_size)
    check_positive("--lr", args.lr)
    check_positive("--limit", args.limit)
    check_non_negative("--grad-clip", args.grad_clip)
    check_non_negative("--momentum", args.momentum)
    check_positive("--lr-decay", args.lr_decay)
    for name in ("--eps", "--lr", "--grad-clip", "--momentum", "--lr-decay"):
        check_finite(name, getattr(args, name[2:].replace("-", "_")))
    check_non_negative("--micro-batch", args.micro_batch)
    for name in ("--micro-batch-workers", "--population-workers", "--population-chunk",
                 "--population-memory", "--bound-memory"):
        value = getattr(args, name[2:].replace("-", "_"))
        if value is not None:
            check_finite(name, value)
            check_positive(name, value)
    check_non_negative("--eval-limit", args.eval_limit)
    check_positive("--max-steps", args.max_steps)
    check_positive("--stop-after-epochs", args.stop_after_epochs)
    if args.arch not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {args.arch!r}; choose from "
                         f"{', '.join(ARCHITECTURES)}")
    if args.init not in INITIALISERS:
        raise UsageError(f"unknown initialisation {args.init!r}; choose from "
                         f"{', '.join(INITIALISERS)}")
    if args.dtype not in ("float32", "float64"):
        raise UsageError(f"--dtype must be float32 or float64, got {args.dtype!r}")
    if args.augmentation not in ("default", "none"):
        raise UsageError(f"--augmentation must be 'default' or 'none', got "
                         f"{args.augmentation!r}")
    check_device(args.device)
    from nobound.training.method import available_methods, get_method_class

    if args.micro_batch and args.method in available_methods() and \
            not get_method_class(args.method).splits_into_micro_batches:
        raise UsageError(f"--micro-batch does not apply to --method {args.method}: it "
                         "evaluates its population without a graph, in chunks")


def check_execution_plan(run_config: dict, trainer_config: Any) -> None:
    """Refuse, before anything is written, a plan the run's method cannot execute."""
    from nobound.training.method import create_method

    method = create_method(run_config["method"], **run_config["method_options"])
    try:
        method.check_plan(trainer_config.execution_plan())
    except ValueError as error:
        raise UsageError(str(error)) from None


def resolve_configuration(args: argparse.Namespace) -> tuple[dict, Any, Any]:
    """(run config, trainer config, checkpoint to resume from or None)."""
    out = Path(args.out)
    check_output_directory(out)
    if not args.resume or not out.is_dir() or not any(out.iterdir()):
        if not args.resume and out.is_dir() and any(out.iterdir()):
            raise UsageError(f"output directory {out} is not empty; pass --resume to continue "
                             "its run or choose another --out")
        validate(args)  # a new run (--resume on a new directory starts one)
        run, trainer_config = run_config_from_args(args), trainer_config_from_args(args)
        check_execution_plan(run, trainer_config)
        return run, trainer_config, None
    check_device(args.device)
    checkpoint = newest_intact_checkpoint(out, args.device)
    if checkpoint is not None:
        stored, source = checkpoint.config, checkpoint.path
    elif (out / "config.json").is_file():  # stopped before its first checkpoint
        source = out / "config.json"
        try:
            stored = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UsageError(f"{source}: unreadable ({error})") from None
    else:
        raise UsageError(f"nothing to resume in {out}: no checkpoint and no config.json")
    run, trainer_config = stored_configuration(stored, source)
    reject_conflicting_flags(args, run, trainer_config, source)
    return run, trainer_config, checkpoint


def newest_intact_checkpoint(out: Path, device: str) -> Any:
    """The newest checkpoint of ``out`` that loads; unreadable newer ones are renamed to
    ``*.corrupt`` (so they never shadow it again) and reported. Stale temporaries of
    killed writes are removed first."""
    from nobound.io.checkpoint import CheckpointError, load_checkpoint
    from nobound.training.trainer import checkpoints_newest_first, remove_stale_temporaries

    for removed in remove_stale_temporaries(out):
        print(f"note: removed {removed.name}, left by a checkpoint write that was killed",
              file=sys.stderr)
    candidates = checkpoints_newest_first(out)
    broken = []
    for path in candidates:
        try:
            checkpoint = load_checkpoint(path, device=device)
        except CheckpointError as error:
            broken.append((path, str(error).splitlines()[0]))
            continue
        for bad, why in broken:
            bad.rename(bad.with_name(bad.name + ".corrupt"))
            print(f"note: {why}; renamed it to {bad.name}.corrupt and resumed from "
                  f"{path.name}, the newest intact checkpoint", file=sys.stderr)
        return checkpoint
    if broken:
        raise UsageError(f"no intact checkpoint in {out}: {broken[0][1]}")
    return None


def stored_configuration(stored: Any, source: Path) -> tuple[dict, Any]:
    from nobound.training.trainer import TrainerConfig

    try:
        run = {key: stored["run"][key] for key in RUN_KEYS}
        run.update({key: stored["run"].get(key) for key in OPTIONAL_RUN_KEYS})
        trainer_config = TrainerConfig(**stored["trainer"])
    except (KeyError, TypeError) as error:
        raise UsageError(f"{source}: not a run of `nobound train` (missing {error})") from None
    return run, trainer_config


def reject_conflicting_flags(args: argparse.Namespace, run: dict, trainer_config: Any,
                             source: Path) -> None:
    """Flags given with --resume must agree with the stored run: resuming never silently
    trains a different job (given = on the command line, presets.track_explicit_flags)."""
    from dataclasses import asdict

    given = getattr(args, "explicit_flags", set())
    stored = {**asdict(trainer_config), **run}
    conflicts = []
    for key in STORED_FLAGS:
        value = getattr(args, key, None)
        if key in given and key in stored and _as_stored(value) != _as_stored(stored[key]):
            conflicts.append(f"--{key.replace('_', '-')} {value} (stored: {stored[key]})")
    if "normalize" in given and run.get("normalize") is not None and \
            resolve_normalization(args.normalize, run["dataset"]) != run["normalize"]:
        conflicts.append(f"--normalize {args.normalize} (stored: {run['normalize']})")
    if conflicts:
        raise UsageError(f"--resume continues the run stored in {source}; these flags "
                         f"conflict with it: {'; '.join(conflicts)} (drop them, or start a "
                         f"new run in another --out)")


def _as_stored(value: Any) -> Any:
    """Lists and tuples compare alike (JSON keeps lists)."""
    return list(value) if isinstance(value, tuple | list) else value


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nobound.attack.evaluation import predict
    from nobound.backend import to_device
    from nobound.data import BatchLoader
    from nobound.io.architecture import describe_model
    from nobound.nn.init import initialise
    from nobound.nn.zoo import build_model
    from nobound.training.method import create_method
    from nobound.training.presets import apply_preset
    from nobound.training.trainer import Trainer

    if not args.resume:
        try:
            notes = apply_preset(args)
        except ValueError as error:
            raise UsageError(str(error)) from None
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    run_config, trainer_config, checkpoint = resolve_configuration(args)
    method = create_method(run_config["method"], **run_config["method_options"])
    if args.ray is not None:
        from nobound.distributed import on_ray

        try:
            method = on_ray(method, None if args.ray == "local" else args.ray)
        except (ValueError, RuntimeError) as error:
            raise UsageError(str(error)) from None
    dtype = np.dtype(run_config["dtype"])
    train = load_split(run_config["dataset"], "train", args.data_dir, run_config["limit"])
    eval_limit = run_config["eval_limit"]
    test = None if eval_limit == 0 else load_split(run_config["dataset"], "test",
                                                   args.data_dir, eval_limit)
    # checkpoints written before the flag existed always normalised
    normalize = (train.mean, train.std) if run_config.get("normalize", "dataset") != "none" \
        else None
    model = build_model(run_config["arch"], train.input_shape, train.num_classes,
                        normalize=normalize, dtype=dtype)
    initialise(model, run_config["init"], trainer_config.seed)
    if run_config.get("init_from"):  # a zoo network's weights, or any .h5/.onnx chain
        from nobound.io.models import initial_model

        model = initial_model(run_config["init_from"], model, resumed=checkpoint)
    model.to(args.device)
    augmentation = None if run_config["augmentation"] == "none" else "default"
    loader = BatchLoader(train, run_config["batch_size"], seed=trainer_config.seed,
                         augmentation=augmentation, device=args.device, dtype=dtype)
    evaluate = None
    if test is not None:
        test_images = to_device(test.images.astype(dtype), args.device)

        def evaluate(trained: Any) -> dict[str, float]:
            return {"test_accuracy": float((predict(trained, test_images) == test.labels)
                                           .mean())}

    architecture = describe_model(model, train.input_shape, train.num_classes,
                                  name=run_config["arch"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    eps_schedule = None
    if run_config.get("eps_schedule"):
        from nobound.training.schedules import EpsilonRamp

        eps_schedule = EpsilonRamp(trainer_config.eps, **run_config["eps_schedule"])
    # the run's one execution plan is trainer_config.execution_plan(), built by the trainer
    # and handed to every step: micro-batches, population chunks and workers, the bound's
    # memory budget and patches (the "execution plan" flags)
    trainer = Trainer(model, method, loader, trainer_config, run_dir=out,
                      architecture=architecture, evaluate=evaluate, run_config=run_config,
                      quiet=args.quiet, eps_schedule=eps_schedule)
    if checkpoint is not None:
        trainer.restore(checkpoint)
        print(f"resuming {out} at epoch {trainer.epoch}, step {trainer.step}", file=sys.stderr)
    elif not (out / "config.json").exists():  # resuming before a checkpoint keeps it
        from dataclasses import asdict

        write_json(out / "config.json", {"run": run_config, "trainer": asdict(trainer_config)})
    else:
        if trainer.logger is not None:
            trainer.logger.truncate_after(0)  # the lines of the attempt that is redone
        print(f"resuming {out} from its config.json (no checkpoint was written yet)",
              file=sys.stderr)
    max_steps = args.max_steps
    if args.stop_after_epochs is not None:
        epoch_end = args.stop_after_epochs * trainer.steps_per_epoch
        max_steps = epoch_end if max_steps is None else min(max_steps, epoch_end)
    record = trainer.fit(max_steps=max_steps)
    if trainer.epoch < trainer_config.epochs:
        print(f"stopped at step {trainer.step}; continue with: nobound train --out {out} "
              "--resume")
        return 0
    summary = ", ".join(f"{k} {v:.4f}" for k, v in record.items()
                        if k in ("train_loss", "train_accuracy", "test_accuracy"))
    print(f"trained {run_config['arch']} on {run_config['dataset']} with "
          f"{run_config['method']}: {summary or 'done'} -> {out / 'model.h5'}")
    return 0
