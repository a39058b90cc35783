"""The public API resolves, and the pure parts import without Lightning or Hydra (no import cycles between packages)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_compress


def test_every_public_name_resolves_to_the_real_object() -> None:
    from lightning_compress.callbacks import FPGMPruning, load_pruned_checkpoint
    from lightning_compress.distillation.kd import KnowledgeDistillation
    from lightning_compress.pruning import select_channels

    for name in lightning_compress.__all__:
        assert getattr(lightning_compress, name) is not None, name
    assert lightning_compress.FPGMPruning is FPGMPruning
    assert lightning_compress.load_pruned_checkpoint is load_pruned_checkpoint
    assert lightning_compress.KnowledgeDistillation is KnowledgeDistillation
    assert lightning_compress.select_channels is select_channels
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        lightning_compress.Nope  # noqa: B018


@pytest.mark.parametrize("module", ["lightning_compress.pruning", "lightning_compress.cost",
                                    "lightning_compress.functional", "lightning_compress.functional.distillation",
                                    "lightning_compress.pruning.saving", "lightning_compress.loading",
                                    "lightning_compress.portable", "lightning_compress.zoo"])
def test_pure_modules_load_neither_lightning_nor_hydra(module: str) -> None:
    code = (f"import sys, {module}\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pytorch_lightning', 'lightning', 'lightning_fabric', 'hydra', 'omegaconf', 'torchmetrics'))\n"
            "print(heavy)\nsys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{module} loads {result.stdout.strip()} {result.stderr[-500:]}"


@pytest.mark.parametrize(("old", "new", "name"), [
    ("lightning_compress.profiling", "lightning_compress.cost", "count_macs"),
    ("lightning_compress.exporting", "lightning_compress.portable", "export_and_check"),
    ("lightning_compress.distillation.functional", "lightning_compress.functional.distillation", "fsp_loss"),
])
def test_moved_modules_keep_their_old_import_path_with_a_warning(old: str, new: str, name: str) -> None:
    import importlib

    moved = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"`{old}` moved to `{new}`"):
        found = getattr(moved, name)
    assert found is getattr(importlib.import_module(new), name)
    assert name in dir(moved)
    with pytest.raises(AttributeError, match="Nope"):
        moved.Nope  # noqa: B018


def _imports() -> dict[str, set[str]]:
    """Module -> the lightning_compress modules it imports anywhere (function-level imports included)."""
    root = Path(lightning_compress.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                    else []))
                if base.startswith("lightning_compress"):
                    found.add(base)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("lightning_compress")}
        graph[name] = found
    return graph


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycles_between_packages_or_between_engine_modules() -> None:
    graph = _imports()

    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module == "lightning_compress" or module.endswith(".__main__"):
            continue  # the top-level API re-exports; `python -m` entry points are run, never imported
        packages.setdefault(package(module), set()).update(
            package(t) for t in targets if package(t) != package(module) and t != "lightning_compress")
    assert _cycle(packages) is None, _cycle(packages)
    engine = {m: {t for t in ts if t.startswith("lightning_compress.pruning.") and t != m}
              for m, ts in graph.items() if m.startswith("lightning_compress.pruning.")}
    assert _cycle(engine) is None, _cycle(engine)
    assert not any(t.startswith("lightning_compress.pipeline") for m, ts in graph.items()
                   if m.startswith("lightning_compress.distillation") for t in ts)


def test_engine_exports_its_api_and_old_internal_names_still_import_with_a_warning() -> None:
    import lightning_compress.pruning as engine
    from lightning_compress.pruning import graph, selection

    assert all(getattr(engine, name) is not None for name in engine.__all__)
    assert "Member" not in engine.__all__ and "select_on_graph" not in engine.__all__
    with pytest.warns(DeprecationWarning, match="import it from `lightning_compress.pruning.graph`"):
        assert engine.Member is graph.Member
    with pytest.warns(DeprecationWarning, match="select_channels"):
        from lightning_compress.pruning import select_on_graph
    assert select_on_graph is selection.select_on_graph
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        engine.Nope  # noqa: B018
