"""The one error type the data package raises for bad data on disk."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data source is missing, has the wrong layout, or holds a file that cannot be read.

    The message always names the offending file (or archive member) and says what was expected.
    """
