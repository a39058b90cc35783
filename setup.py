"""Build hook (the rest of the packaging is in pyproject.toml): the Hydra app's config tree ``conf/`` stays at the
project root, where it is edited and where ``python train.py`` reads it, and is copied into the wheel as
``lightning_compress/conf`` so that an installed package runs the app from any folder (``lightning_compress.config``
finds either)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithConf(build_py):
    """``build_py`` plus a copy of ``conf/`` (YAML only) into the built package."""

    def run(self) -> None:
        super().run()
        source = ROOT / "conf"
        if not (source / "train.yaml").is_file():
            raise FileNotFoundError(f"the app's config tree {source} is missing: build from a full checkout or sdist.")
        shutil.copytree(source, Path(self.build_lib) / "lightning_compress" / "conf", dirs_exist_ok=True,
                        ignore=lambda folder, names: [n for n in names if not (n.endswith(".yaml")
                                                                                or (Path(folder) / n).is_dir())])


setup(cmdclass={"build_py": BuildPyWithConf})
