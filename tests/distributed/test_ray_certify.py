"""`certify --ray` on the local cluster (conftest.py) writes the results and table a single
process writes, and resumes from an interrupted results file."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ray")

from nobound.cli import main  # noqa: E402
from nobound.io.architecture import describe_model  # noqa: E402
from nobound.io.checkpoint import save_checkpoint  # noqa: E402
from nobound.nn import conv_net, kaiming_uniform  # noqa: E402

FLAGS = ["--eps", "0.01", "--n", "4", "--timeout", "20", "--max-nodes", "30",
         "--attack-steps", "2", "--attack-restarts", "1", "--quiet"]


def records(folder):
    lines = next(folder.glob("certify-*eps0.01.jsonl")).read_text().splitlines()
    return json.loads(lines[0])["header"], [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
                                  for line in lines[1:]]


def test_certify_on_ray_writes_what_one_process_writes(tmp_path):
    model = kaiming_uniform(conv_net((1, 28, 28), 10, [(4, 5, 3, 0)], [8],
                                     dtype=np.float32), seed=0)
    checkpoint = save_checkpoint(tmp_path / "model.h5", model,
                                 architecture=describe_model(model, (1, 28, 28), 10),
                                 config={"run": {"dataset": "fashion-mnist-embedded"}})
    single, distributed = tmp_path / "single", tmp_path / "ray"
    assert main(["certify", "--model", str(checkpoint), *FLAGS, "--out", str(single)]) == 0
    header, expected = records(single)
    # an interrupted Ray run: the file holds the header and sample 2 only
    distributed.mkdir()
    results = distributed / next(single.glob("certify-*eps0.01.jsonl")).name
    kept = json.loads(next(single.glob("certify-*eps0.01.jsonl")).read_text().splitlines()[3])
    results.write_text(json.dumps({"header": header}) + "\n" + json.dumps(kept) + "\n")
    assert main(["certify", "--model", str(checkpoint), *FLAGS, "--ray",
                 "--out", str(distributed)]) == 0
    assert records(distributed) == (header, expected)
    lines = results.read_text().splitlines()
    assert json.loads(lines[3])["seconds"] == kept["seconds"]  # resumed, not redone
