"""Glue between Snakemake rule scripts and the library.

Every script in ``scripts/`` starts with::

    from microprop.workflow import setup_script
    snakemake = setup_script(globals())

Under Snakemake this returns the injected ``snakemake`` object and sends the
``logging`` output of the library to the rule's ``log:`` file (and stderr).
Run by hand for debugging, ``python scripts/<rule>.py --mock job.yaml`` builds
the same object from a YAML file with keys ``input``, ``output``, ``params``,
``log``, ``wildcards``, ``threads``, ``resources`` and ``config``.
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
