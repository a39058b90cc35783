"""``python -m lightning_compress.pruning --model resnet56 --ratio 0.3 [--table] [--plan-out p.json]``: the profile
command's before/after pruning with command-line flags (:func:`lightning_compress.profile.prune_main`).

The command is loaded when run, not imported: the engine package imports no app code.
"""

import importlib

if __name__ == "__main__":
    raise SystemExit(importlib.import_module("lightning_compress.profile").prune_main())
