"""Progress bars of long steps, from one place (tqdm).

Library modules report progress through :func:`progress`; it does not depend
on Snakemake, so the library can be used without the workflow.
"""
from __future__ import annotations

import sys


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on stderr that stays quiet when not on a terminal.

    On a non-interactive stderr (Snakemake logs, CI) it updates at most every
    30 s so that logs stay readable.
    """
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
