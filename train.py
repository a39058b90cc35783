"""Train, compress and measure: ``python train.py [+method=<name>] [+experiment=<name>] [key=value ...]``."""

import hydra
from omegaconf import DictConfig

from lightning_compress.config import register_resolvers
from lightning_compress.pipeline import run

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the final test accuracy (the value a sweeper would optimise)."""
    record = run(cfg)
    return (record.get("final") or {}).get("test_acc")


if __name__ == "__main__":
    main()
