"""The whole GPU path on the CPU guard for CuPy: the trainer for every method and
relaxation, checkpoints, and the command line with ``--device`` (the guard always, "cuda"
with a GPU: benchmarks/gpu_check.sh runs them there with NOBOUND_REQUIRE_GPU=1).

The guard (nobound.testing.guard_xp) refuses implicit host conversions and mixing with
NumPy arrays as CuPy does, so any such mistake on these paths fails here. Where no random
numbers are drawn on the device, the guard run must equal the CPU run to round-off (not bit
for bit: NumPy arrays take compiled and blocked kernels that device arrays do not).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nobound.backend import array_module_for, get_array_module, to_numpy
from nobound.certify.pipeline import Certifier, CertifierConfig, predict
from nobound.certify.problem import float64_model
from nobound.cli import main
from nobound.data import BatchLoader
from nobound.io.architecture import describe_model
from nobound.io.checkpoint import load_checkpoint, save_checkpoint
from nobound.nn import conv_net, kaiming_uniform
from nobound.training.method import create_method
from nobound.training.trainer import Trainer, TrainerConfig

#: (method, options): every method, and every relaxation under one of the bound methods
RUNS = [("standard", {}), ("pgd", {"steps": 2}),
        ("grad", {"relaxation": "ibp"}), ("grad", {"relaxation": "hbox"}),
        ("grad", {"relaxation": "crown-ibp"}), ("grad", {"relaxation": "deeppoly"}),
        ("grad", {"relaxation": "alpha-crown"}),
        ("rgs", {"relaxation": "deeppoly", "population_size": 2}),
        ("pgpe", {"relaxation": "deeppoly", "population_size": 4}),
        ("pgpe", {"relaxation": "alpha-crown", "population_size": 2})]
#: runs that draw no random numbers on the device: the CPU run's to round-off
DETERMINISTIC = {"standard", "grad"}


def train_two_steps(device: str, method: str, options: dict, run_dir, data):
    model = kaiming_uniform(conv_net((1, 8, 8), 3, [(4, 3, 2, 1)], [8], batchnorm=True,
                                     dtype=np.float64), seed=1).to(device)
    loader = BatchLoader(data, 8, seed=3, dtype=np.float64, device=device)
    config = TrainerConfig(epochs=1, seed=5, lr=1e-2, eps=0.05, grad_clip=1.0, log_every=1)
    trainer = Trainer(model, create_method(method, **options), loader, config,
                      run_dir=run_dir, quiet=True)
    trainer.fit(max_steps=2)
    return trainer


@pytest.mark.parametrize("method, options", RUNS,
                         ids=[f"{m}-{o.get('relaxation', '')}" for m, o in RUNS])
def test_every_method_trains_on_the_device(tmp_path, method, options, device,
                                           striped_problem):
    trainer = train_two_steps(device, method, options, tmp_path / device, striped_problem())
    for name, value in trainer.model.state_dict().items():
        assert get_array_module(value) is array_module_for(device), name  # none on the host
    path = trainer.save_checkpoint()
    restored = load_checkpoint(path)  # written from device arrays, read on the host
    guard_state = {k: to_numpy(v) for k, v in trainer.model.state_dict().items()}
    for name, value in restored.model.state_dict().items():
        np.testing.assert_array_equal(value, guard_state[name])
    if method in DETERMINISTIC:
        cpu = train_two_steps("cpu", method, options, tmp_path / "cpu", striped_problem())
        for name, value in cpu.model.state_dict().items():
            np.testing.assert_allclose(guard_state[name], value, rtol=1e-9, atol=1e-13,
                                       err_msg=name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guard-cli")
    model = kaiming_uniform(conv_net((1, 28, 28), 10, [(4, 5, 3, 0)], [8],
                                     dtype=np.float32), seed=0)
    path = save_checkpoint(folder / "model.h5", model,
                           architecture=describe_model(model, (1, 28, 28), 10),
                           config={"run": {"dataset": "fashion-mnist-embedded"}})
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, 28, 28)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return path, folder


def test_train_command_on_the_device(tmp_path, device):
    out = tmp_path / "run"
    assert main(["train", "--arch", "cnn3_tiny", "--method", "pgpe", "--relaxation", "ibp",
                 "--population-size", "4", "--eps", "0.02", "--dataset",
                 "fashion-mnist-embedded", "--limit", "20", "--epochs", "1", "--batch-size",
                 "10", "--eval-limit", "10", "--quiet", "--device", device,
                 "--out", str(out)]) == 0
    assert load_checkpoint(out / "model.h5").counters["step"] == 2


def test_bounds_command_on_the_device_equals_the_cpu(checkpoint, capsys, device):
    path, folder = checkpoint
    reports = []
    for where in ("cpu", device):
        assert main(["bounds", "--model", str(path), "--input", str(folder / "x.npy"),
                     "--label", "3", "--eps", "0.01", "--json", "--device", where]) == 0
        report = json.loads(capsys.readouterr().out)
        report.pop("seconds")
        reports.append(report)
    cpu, guard = reports
    for side in ("lower", "upper"):
        np.testing.assert_allclose(guard.pop(side), cpu.pop(side), rtol=1e-5, atol=1e-6)
    assert cpu == guard


def test_certify_command_on_the_device_equals_the_cpu(checkpoint, tmp_path, device):
    path, _ = checkpoint
    tables = []
    for where in ("cpu", device):
        out = tmp_path / where
        assert main(["certify", "--model", str(path), "--eps", "0.004", "--n", "3",
                     "--timeout", "20", "--attack-steps", "3", "--attack-restarts", "1",
                     "--quiet", "--device", where, "--out", str(out)]) == 0
        result = json.loads(next(out.glob("certify-*.json")).read_text())
        tables.append([(r["status"], r["method"]) for r in result["samples"]])
    assert tables[0] == tables[1]


def test_certifier_bounds_on_the_device_and_decides_as_on_the_cpu(checkpoint, device):
    """Samples labelled with the model's own prediction reach the bounding stages."""
    model = load_checkpoint(checkpoint[0]).model
    images = np.random.default_rng(1).uniform(0, 1, (3, 1, 28, 28))
    labels = predict(float64_model(model), images)
    verdicts = {}
    for where in ("cpu", device):
        certifier = Certifier(model, (1, 28, 28), CertifierConfig(
            device=where, methods=("ibp", "deeppoly"), attack_steps=2, attack_restarts=1,
            robustness_attack_steps=2, robustness_attack_restarts=1, timeout=10,
            max_nodes=40))
        assert get_array_module(certifier.bound_model.parameters()[0].data) is (
            array_module_for(where))
        verdicts[where] = [
            (verdict.status, verdict.method) for verdict in (
                certifier.certify_sample(x, int(label), eps)
                for x, label in zip(images, labels, strict=True) for eps in (1e-4, 0.05))]
    assert verdicts["cpu"] == verdicts[device]
    assert any(method in ("ibp", "deeppoly", "bab") for _, method in verdicts["cpu"])



def test_verify_command_on_the_device_gives_the_cpu_verdicts(tmp_path, device):
    pytest.importorskip("onnx")
    from nobound.io.onnx_export import export_onnx
    from nobound.nn import Linear, ReLU, Sequential

    model = kaiming_uniform(Sequential(Linear(3, 8), ReLU(), Linear(8, 2)), seed=2)
    network = export_onnx(model, tmp_path / "net.onnx", (3,))
    outputs = to_numpy(model(np.zeros((1, 3), np.float32)).data)[0]
    larger = int(np.argmax(outputs))
    lines = [f"(declare-const X_{i} Real)" for i in range(3)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(2)]
    for radius, name in ((0.01, "unsat"), (5.0, "sat")):
        box = [f"(assert (>= X_{i} {-radius}))\n(assert (<= X_{i} {radius}))" for i in range(3)]
        property_ = f"(assert (>= Y_{1 - larger} Y_{larger}))"  # the smaller output wins
        (tmp_path / f"{name}.vnnlib").write_text("\n".join(lines + box + [property_]) + "\n")
    for name in ("unsat", "sat"):
        verdicts = []
        for where in ("cpu", device):
            out = tmp_path / f"{name}-{where}.txt"
            assert main(["verify", str(network), str(tmp_path / f"{name}.vnnlib"),
                         # verify's timeout runs from process start (VNN-COMP's rule)
                         "--timeout", "100000", "--device", where, "--results-file",
                         str(out)]) == 0
            verdicts.append(out.read_text().split()[0])
        assert verdicts == [name, name]


def test_description_and_onnx_export_of_a_model_on_the_device(device):
    """Both read parameters and buffers of a model already moved to the device."""
    pytest.importorskip("onnx")
    from nobound.io.onnx_export import to_onnx
    from nobound.nn import Normalize, Sequential

    def network():
        return Sequential(Normalize([0.5], [0.25]), *kaiming_uniform(
            conv_net((1, 8, 8), 3, [(4, 3, 2, 1)], [8], batchnorm=True), seed=1).layers)

    host, moved = network(), network().to(device)
    assert describe_model(moved, (1, 8, 8), 3) == describe_model(host, (1, 8, 8), 3)
    exported, expected = to_onnx(moved, (1, 8, 8)), to_onnx(host, (1, 8, 8))
    assert exported.SerializeToString() == expected.SerializeToString()
