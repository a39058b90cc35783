"""One walk over a model's submodules for the engine's hot path."""

from __future__ import annotations

from torch import nn


def module_table(model: nn.Module, duplicates: bool = False) -> dict[str, nn.Module]:
    """``dict(model.named_modules(remove_duplicate=not duplicates))``: the same names in the same (pre-)order.

    Built by a plain recursive function over ``_modules`` instead of ``named_modules``' nested generators (about
    2.5x faster on ResNet-56); one engine call walks the model several times (tracing, capture, checks, surgery).
    ``duplicates=True``: a module registered under several names appears under each of them.
    """
    table: dict[str, nn.Module] = {"": model}
    seen = {id(model)}

    def visit(prefix: str, module: nn.Module) -> None:
        for key, child in module._modules.items():
            if child is None:
                continue
            if not duplicates:
                if id(child) in seen:
                    continue
                seen.add(id(child))
            name = f"{prefix}.{key}" if prefix else key
            table[name] = child
            visit(name, child)

    visit("", model)
    return table
