"""Threads per process: N concurrent processes (CPU DDP, a local multirun, parallel tests) never ask for more
threads than the cores they share; `threads=` sets it."""

from __future__ import annotations

import os

import pytest
import torch
from omegaconf import OmegaConf

from lightning_compress.pipeline import builders
from lightning_compress.pipeline.builders import configure_threads, local_processes, threads_per_process


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # restored after the test
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("cores", "processes", "expected"), [(2, 1, 2), (2, 2, 1), (2, 5, 1), (16, 4, 4), (16, 3, 5)])
def test_threads_per_process_never_oversubscribes(cores, processes, expected):
    assert threads_per_process(cores, processes) == expected
    assert expected * processes <= cores or expected == 1


def test_local_processes_counts_cpu_ddp_ranks():
    assert local_processes(OmegaConf.create({"strategy": "ddp", "devices": 2})) == 2
    assert local_processes(OmegaConf.create({"strategy": "ddp_spawn", "devices": [0, 1, 2]})) == 3
    assert local_processes(OmegaConf.create({"strategy": "auto", "devices": 4})) == 1


def test_configure_threads_explicit_then_environment_then_automatic(monkeypatch):
    trainer = {"strategy": "ddp", "devices": 2}
    assert configure_threads(OmegaConf.create({"threads": 3, "trainer": trainer})) == 3
    assert torch.get_num_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"  # children (DDP ranks) inherit it
    monkeypatch.setattr(builders, "_THREADS_FROM_ENVIRONMENT", "2")
    assert configure_threads(OmegaConf.create({"threads": None, "trainer": trainer})) == 2
    monkeypatch.setattr(builders, "_THREADS_FROM_ENVIRONMENT", None)
    monkeypatch.setattr(builders, "usable_cores", lambda: 8)
    assert configure_threads(OmegaConf.create({"threads": None, "trainer": trainer})) == 4  # 8 cores, 2 ranks
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    assert configure_threads(OmegaConf.create({"threads": None, "trainer": trainer})) == 1  # 8 cores, 2 x 4


def test_usable_cores_prefers_slurm_then_affinity(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert builders.usable_cores() == 6
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert builders.usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "two"])
def test_bad_threads_is_rejected(bad):
    with pytest.raises(ValueError, match="`threads` must be a positive int"):
        configure_threads(OmegaConf.create({"threads": bad, "trainer": {}}))
