"""GPU placement logic, checked on CPU: selection, one worker per GPU slot, memory caps, pinning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweeper.errors import SweeperError
from sweeper.train.devices import GpuInfo, parse_nvidia_smi, plan_workers, select_gpus

TWO = [GpuInfo(0, 81920), GpuInfo(1, 81920)]


def test_nvidia_smi_parsing() -> None:
    assert parse_nvidia_smi("0, 81559\n1, 81559\n") == [GpuInfo(0, 81559), GpuInfo(1, 81559)]
    assert parse_nvidia_smi("") == []


def test_gpu_selection() -> None:
    assert select_gpus(None, TWO) == TWO and select_gpus("all", TWO) == TWO
    assert select_gpus("1", TWO) == [TWO[1]] and select_gpus("none", TWO) == []
    with pytest.raises(SweeperError, match="GPU 2 does not exist"):
        select_gpus("0,2", TWO)
    with pytest.raises(SweeperError, match="is not 'all', 'none' or a list"):
        select_gpus("first", TWO)


def test_one_worker_per_gpu_pinned_with_memory_growth() -> None:
    plan = plan_workers(TWO, 1, None, 16)
    assert [p.gpu for p in plan] == [0, 1] and all(p.memory_limit_mb is None for p in plan)
    assert plan[1].env() == {"CUDA_VISIBLE_DEVICES": "1"}


def test_packing_trials_caps_memory_per_process() -> None:
    plan = plan_workers(TWO, 4, None, 16)
    assert [p.gpu for p in plan] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {p.memory_limit_mb for p in plan} == {int(81920 * 0.9 / 4)}
    assert plan[5].env() == {"CUDA_VISIBLE_DEVICES": "1", "SWEEPER_GPU_MEMORY_MB": "18432"}
    with pytest.raises(SweeperError, match="does not match 2 GPU"):
        plan_workers(TWO, 4, 3, 16)


def test_cpu_workers_split_the_cores_and_hide_gpus() -> None:
    assert plan_workers([], 1, None, 2)[0].env() == {}
    plan = plan_workers([], 1, 4, 16)
    assert len(plan) == 4 and plan[0].env() == {"CUDA_VISIBLE_DEVICES": "", "SWEEPER_THREADS": "4"}


def test_worker_applies_thread_setting_in_tensorflow() -> None:
    code = (
        "import os; os.environ['SWEEPER_THREADS']='1';"
        "from sweeper.train.runtime import configure_tensorflow; configure_tensorflow();"
        "import tensorflow as tf; print(tf.config.threading.get_intra_op_parallelism_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "1", out.stderr


def test_compute_options_compile_the_model(tmp_path: Path) -> None:
    from sweeper.config.spec import spec_from_dict
    from sweeper.search.space import full_params
    from sweeper.train.estimator import make_estimator

    spec = spec_from_dict({"name": "c", "data": "digits", "params": {"model__dropout": [0.0]},
                           "training": {"epochs": 1, "batch_size": 8, "model__units": 4},
                           "compute": {"steps_per_execution": 4, "jit_compile": False, "mixed_precision": True}})
    est = make_estimator(spec, full_params(spec, {"model__dropout": 0.0}), 1)
    x = np.random.default_rng(0).random((32, 8, 8, 1)).astype("float32")
    est.fit(x, np.arange(32) % 3)
    assert est.model_.steps_per_execution == 4
    assert est.model_.output.dtype == "float32"
    assert est.predict_proba(x).shape == (32, 3)
