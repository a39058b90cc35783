"""Fixtures of the callback tests (the tiny networks, data and Trainer they build are in ``tests/helpers.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytorch_lightning as pl

from tests.helpers import quiet_trainer


@pytest.fixture
def make_trainer(tmp_path) -> Callable[..., pl.Trainer]:
    return lambda **kwargs: quiet_trainer(tmp_path, **kwargs)
