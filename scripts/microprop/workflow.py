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

import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

log = logging.getLogger(__name__)

class _Named(SimpleNamespace):
    """Attribute and index access, like Snakemake's ``Namedlist``."""

    def __init__(self, value=None):
        value = value or {}
        if isinstance(value, dict):
            super().__init__(**value)
            self._items = list(value.values())
        else:
            super().__init__()
            self._items = list(value)

    def __getitem__(self, i):
        return self._items[i]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def get(self, key, default=None):
        return getattr(self, key, default)


def mock_snakemake(path):
    """Build a Snakemake-like job object from a YAML description.

    Parameters
    ----------
    path : path-like
        YAML file with keys ``input``, ``output``, ``params``, ``log``,
        ``wildcards`` (mappings or lists), ``threads`` (int), ``resources``
        and ``config`` (mappings).
    """
    spec = yaml.safe_load(Path(path).read_text()) or {}
    return SimpleNamespace(
        input=_Named(spec.get("input")), output=_Named(spec.get("output")),
        params=_Named(spec.get("params")), log=_Named(spec.get("log")),
        wildcards=_Named(spec.get("wildcards")), threads=int(spec.get("threads", 1)),
        resources=_Named(spec.get("resources")), config=spec.get("config", {}),
        rule=spec.get("rule", Path(sys.argv[0]).stem),
    )


def setup_script(namespace):
    """Return the job object of a rule script and set up logging.

    Parameters
    ----------
    namespace : dict
        The script's ``globals()``; holds ``snakemake`` when run by Snakemake.

    Returns
    -------
    object
        Snakemake's job object, or a mock built from ``--mock FILE``.

    Raises
    ------
    SystemExit
        When run by hand without ``--mock``.
    """
    smk = namespace.get("snakemake")
    if smk is None:
        if "--mock" in sys.argv:
            smk = mock_snakemake(sys.argv[sys.argv.index("--mock") + 1])
        else:
            raise SystemExit(
                f"{sys.argv[0]} is a Snakemake rule script: run it through snakemake, "
                "or by hand with --mock job.yaml (see microprop/workflow.py)")
    import matplotlib

    matplotlib.use("Agg")
    handlers = [logging.StreamHandler(sys.stderr)]
    if len(smk.log):
        Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(smk.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threads = str(getattr(smk, "threads", 1) or 1)
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    log.info("rule %s started", getattr(smk, "rule", "?"))
    return smk
