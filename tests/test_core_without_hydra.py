"""The core (callbacks, distillation modules, data modules, loading, export of users' files) imports without Hydra or
OmegaConf: only the app (``train.py``, ``lightning_compress.pipeline``) needs them (issue 29, item 6)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ["lightning_compress.callbacks", "lightning_compress.distillation", "lightning_compress.modules",
        "lightning_compress.data", "lightning_compress.export", "lightning_compress.loading",
        "lightning_compress._namespaces"]


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_without_hydra(module: str) -> None:
    code = (f"import sys, {module}\n"
            "found = sorted({m.split('.')[0] for m in sys.modules} & {'hydra', 'omegaconf'})\n"
            "print(found)\nsys.exit(1 if found else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{module} loads {result.stdout.strip()} {result.stderr[-500:]}"
