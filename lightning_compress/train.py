"""The Hydra app: train, compress and measure.

    python -m lightning_compress.train [+method=<name>] [+experiment=<name>] [key=value ...]
    lightning-compress-train +method=slimming          # the console script of an installed package
    python train.py +method=slimming                   # the same, from a source checkout

The config tree is the checkout's ``conf/`` or, in an installed wheel, the copy inside the package
(:data:`lightning_compress.config.CONFIG_DIR`); an installed package writes ``logs/`` below the working directory.
"""

import hydra
from omegaconf import DictConfig

from lightning_compress.config import CONFIG_DIR, register_resolvers
from lightning_compress.pipeline import run

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the final test accuracy (the value a sweeper would optimise)."""
    record = run(cfg)
    return (record.get("final") or {}).get("test_acc")


if __name__ == "__main__":
    main()
