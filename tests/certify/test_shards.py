"""Certification in shards: --shard i/K files merge (--merge) into the results a single
process writes; bad splits and unfinished shards fail on one line, writing nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nobound.certify.shards import Split, parse_shard, shard_indices
from nobound.cli import main
from nobound.io.architecture import describe_model
from nobound.io.checkpoint import save_checkpoint
from nobound.nn import conv_net, kaiming_uniform

TIMING = ("seconds",)
FLAGS = ["--eps", "0.01", "--n", "5", "--timeout", "10", "--max-nodes", "30",
         "--attack-steps", "2", "--attack-restarts", "1", "--quiet"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    model = kaiming_uniform(conv_net((1, 28, 28), 10, [(4, 5, 3, 0)], [8],
                                     dtype=np.float32), seed=0)
    return save_checkpoint(folder / "model.h5", model,
                           architecture=describe_model(model, (1, 28, 28), 10),
                           config={"run": {"dataset": "fashion-mnist-embedded"}})


def results(folder):
    """(header, records without timings) of the folder's whole-run results file."""
    lines = next(folder.glob("certify-*eps0.01.jsonl")).read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    return json.loads(lines[0]), [{k: v for k, v in r.items() if k not in TIMING}
                                  for r in records]


def test_shards_partition_the_samples():
    assert parse_shard("1/3") == (1, 3) and parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("3/3", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    together = sorted(i for k in range(3) for i in shard_indices(10, (k, 3)))
    assert together == list(range(10)) and shard_indices(10, (1, 3)) == [1, 4, 7]
    with pytest.raises(ValueError, match="exclude each other"):
        Split.from_flags("0/2", True, None)


def test_merged_shards_equal_the_single_process_run(checkpoint, tmp_path, capsys):
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    assert main(["certify", "--model", str(checkpoint), *FLAGS, "--out", str(whole)]) == 0
    for shard in ("1/2", "0/2"):
        assert main(["certify", "--model", str(checkpoint), *FLAGS, "--shard", shard,
                     "--out", str(pieces)]) == 0
    assert not list(pieces.glob("*.md"))  # a shard writes no table
    assert main(["certify", "--model", str(checkpoint), *FLAGS, "--merge",
                 "--out", str(pieces)]) == 0
    assert results(pieces) == results(whole)
    merged = json.loads(next(pieces.glob("certify-*.json")).read_text())
    single = json.loads(next(whole.glob("certify-*.json")).read_text())
    for key in ("natural_accuracy", "certified_accuracy", "adversarial_accuracy", "verdicts"):
        assert merged["summary"][key] == single["summary"][key]


def test_merging_unfinished_shards_fails_on_one_line(checkpoint, tmp_path, capsys):
    pieces = tmp_path / "pieces"
    assert main(["certify", "--model", str(checkpoint), *FLAGS, "--shard", "0/2",
                 "--out", str(pieces)]) == 0
    capsys.readouterr()
    assert main(["certify", "--model", str(checkpoint), *FLAGS, "--merge",
                 "--out", str(pieces)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "unfinished shards: 1/2" in error, error
    assert not list(pieces.glob("certify-*eps0.01.jsonl"))  # nothing half-merged
    assert main(["certify", "--model", str(checkpoint), *FLAGS, "--shard", "2/2",
                 "--out", str(pieces)]) == 2
