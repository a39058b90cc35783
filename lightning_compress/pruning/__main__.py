"""``python -m lightning_compress.pruning --model resnet56 --ratio 0.3 [--table] [--plan-out p.json]``: the profile
command's before/after pruning with command-line flags (:func:`lightning_compress.profile.prune_main`).

An entry point only: the engine package never imports it, so it may import the app.
"""

from lightning_compress.profile import prune_main

if __name__ == "__main__":
    raise SystemExit(prune_main())
