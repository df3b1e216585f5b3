"""Instrument exports of nanoindentation: the reader (column and unit maps,
rejected rows) and the writer used by the virtual specimens.
"""
from ._export import (  # noqa: F401
    KLA_COLUMNS,
    KLA_UNITS,
    STANDARD_COLUMNS,
    read_export,
    write_export,
)

__all__ = [
    "STANDARD_COLUMNS",
    "KLA_COLUMNS",
    "KLA_UNITS",
    "write_export",
    "read_export",
]
