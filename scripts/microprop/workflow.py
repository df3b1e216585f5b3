"""Glue between Snakemake rule scripts and the library.

Every script in ``scripts/`` hands its ``globals()`` to :func:`setup_script`,
which returns the job object the script works on (``input``, ``output``,
``params``, ``log``, ``wildcards``, ``threads``, ``resources``, ``config``,
``rule``) and sends the ``logging`` output of the library to the rule's
``log:`` file (and stderr)::

    from microprop.workflow import setup_script
    ...
    main(setup_script(globals()))

The job comes from one of three places:

* Under Snakemake, the ``snakemake`` object Snakemake injected.
* Run by hand with wildcards only, from the repository root::

      python scripts/locate_indents.py specimen=demo area=A1 batch=b01

  :func:`job_from_workflow` loads the repository's ``Snakefile`` with
  Snakemake's own API (``config.yaml`` and any ``--configfile FILE``, checked
  against ``schemas/config.schema.yaml`` with its defaults filled in, as in a
  real run) and builds the job of the rule that runs the script for those
  wildcards: the same object Snakemake would inject. Output and log folders
  are created as Snakemake creates them, and the script runs in the
  working directory. Options: ``--configfile FILE`` (repeatable),
  ``--rule NAME`` (needed where one script runs several rules, e.g.
  ``virtual_specimen.py``), ``--directory DIR`` (the working directory, as
  ``snakemake --directory``), ``--cores N`` (default: all, as
  ``snakemake --cores all``).
* Run by hand or in tests from a hand-written YAML job,
  ``python scripts/<rule>.py --mock job.yaml``: :func:`job_from_yaml`.

Unlike Snakemake, a run by hand neither checks that the inputs exist nor
removes outputs left by an earlier run, and it writes no benchmark file.
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

log = logging.getLogger(__name__)

#: The repository: ``Snakefile``, ``config.yaml``, ``rules/``, ``scripts/``.
REPO = Path(__file__).resolve().parents[2]


class JobError(ValueError):
    """A job that cannot be built: unknown rule, wrong or mismatched wildcards."""


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


def job_from_yaml(path):
    """Build a Snakemake-like job object from a YAML description.

    Parameters
    ----------
    path : path-like
        YAML file with keys ``input``, ``output``, ``params``, ``log``,
        ``wildcards`` (mappings or lists), ``threads`` (int), ``resources``
        and ``config`` (mappings), ``rule`` (str; default: the name of the
        running script). Every key is optional.

    Returns
    -------
    types.SimpleNamespace
        Attributes ``input, output, params, log, wildcards, resources``
        (attribute and index access, ``len``, iteration, ``get``),
        ``threads`` (int), ``config`` (dict) and ``rule`` (str).
    """
    spec = yaml.safe_load(Path(path).read_text()) or {}
    return SimpleNamespace(
        input=_Named(spec.get("input")), output=_Named(spec.get("output")),
        params=_Named(spec.get("params")), log=_Named(spec.get("log")),
        wildcards=_Named(spec.get("wildcards")), threads=int(spec.get("threads", 1)),
        resources=_Named(spec.get("resources")), config=spec.get("config", {}),
        rule=spec.get("rule", Path(sys.argv[0]).stem),
    )


def _rule_script(rule):
    """Absolute path of the script a rule runs, or None."""
    if not rule.script:
        return None
    base = rule.basedir.get_path_or_uri(secret_free=True)
    return Path(os.path.normpath(os.path.join(base, rule.script)))


def _pick_rule(workflow, rulename, script):
    """The rule to build: ``rulename``, else the one rule that runs ``script``."""
    script = Path(script).resolve() if script is not None else None
    runners = [r.name for r in workflow.rules
               if script is not None and _rule_script(r) == script]
    if rulename is None:
        if script is None:
            raise JobError("give the rule name (or the script it runs)")
        if len(runners) == 1:
            return workflow.get_rule(runners[0])
        if not runners:
            raise JobError(f"no rule of the workflow runs {script.name}")
        if script.stem in runners:
            return workflow.get_rule(script.stem)
        raise JobError(f"{script.name} runs the rules {', '.join(runners)}: choose one with --rule NAME")
    if not workflow.is_rule(rulename):
        hint = (f"rules running {script.name}: {', '.join(runners)}" if runners
                else f"rules: {', '.join(r.name for r in workflow.rules)}")
        raise JobError(f"unknown rule {rulename!r} ({hint})")
    rule = workflow.get_rule(rulename)
    if script is not None and _rule_script(rule) != script:
        runs = _rule_script(rule)
        raise JobError(f"rule {rulename} runs {runs.name if runs else 'no script'}, not {script.name}"
                       + (f" (rules running {script.name}: {', '.join(runners)})" if runners else ""))
    return rule


def _check_wildcards(rule, wildcards):
    """Raise JobError unless ``wildcards`` are exactly the rule's and match its files."""
    names = set(rule.wildcard_names)
    missing, extra = sorted(names - set(wildcards)), sorted(set(wildcards) - names)
    if missing or extra:
        have = (f"wildcards {', '.join(sorted(names))}" if names else "no wildcards")
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else [])
        raise JobError(f"rule {rule.name} has {have}: {'; '.join(problems)}")
    from snakemake.io import strip_wildcard_constraints

    for pattern in rule.products():
        if not pattern.get_wildcard_names():
            continue
        match = pattern.match(pattern.apply_wildcards(wildcards))
        if match is not None and match.groupdict() == wildcards:
            continue
        plain = strip_wildcard_constraints(str(pattern))
        constraints = pattern.wildcard_constraints()
        bad = [f"{k}={v!r} does not match {constraints[k].pattern!r}" for k, v in wildcards.items()
               if k in constraints and not constraints[k].fullmatch(v)]
        raise JobError(f"rule {rule.name}, file {plain!r}: " + (
            "; ".join(bad) if bad else f"wildcards {wildcards} do not give a file of this pattern"))


def job_from_workflow(rule=None, wildcards=None, *, script=None, configfiles=(),
                      directory=None, snakefile=None, cores=None):
    """Build the job Snakemake would hand a rule's script, from its wildcards.

    Loads the Snakefile with Snakemake's API (``snakemake.api.SnakemakeApi``)
    as ``snakemake --configfile ...`` would: the Snakefile's own
    ``configfile:`` (``config.yaml``, relative to the working directory) is
    updated by ``configfiles`` and validated with defaults by the rules. The
    job is then created for the given wildcards (``snakemake.jobs.Job``, which
    runs the input functions and evaluates params, log, threads and
    resources) and turned into a ``snakemake.script.Snakemake`` object exactly
    as for a ``script:`` rule (pickled and unpickled, like Snakemake's
    preamble). The job is not run, and neither inputs nor outputs are
    checked or touched.

    Parameters
    ----------
    rule : str, optional
        Rule name. Default: the rule that runs ``script``; required when
        ``script`` is None or runs several rules.
    wildcards : dict of str to str, optional
        Wildcard values; exactly the rule's wildcards (none for rules
        without wildcards).
    script : path-like, optional
        The rule script; when given, the rule must run it.
    configfiles : sequence of path-like
        Extra config files, as ``--configfile``, relative to the current
        directory; later ones win.
    directory : path-like, optional
        Working directory of the workflow, as ``snakemake --directory``
        (default: the current one). Changed into only while the workflow is
        loaded.
    snakefile : path-like, optional
        Default: the repository's ``Snakefile``.
    cores : int, optional
        As ``--cores``; caps ``threads`` (default: all CPUs, as
        ``--cores all``).

    Returns
    -------
    snakemake.script.Snakemake
        ``input, output, log`` (Namedlists of str, paths relative to the
        working directory), ``params, wildcards, resources`` (Namedlists),
        ``threads`` (int), ``config`` (dict), ``rule`` (str),
        ``bench_iteration`` (0 for rules with a benchmark, else None) and
        ``scriptdir`` (str).

    Raises
    ------
    JobError
        Unknown rule, a rule that does not run ``script``, a script that
        runs several rules without ``rule``, missing or unexpected
        wildcards, or wildcard values that do not match the rule's file
        patterns and wildcard constraints.
    snakemake.exceptions.WorkflowError
        When the Snakefile or the config cannot be loaded (e.g. schema
        violations) or an input function fails.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.dag import DAG
    from snakemake.jobs import Job
    from snakemake.script import Snakemake
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )
    from snakemake.utils import available_cpu_count

    wildcards = {str(k): str(v) for k, v in (wildcards or {}).items()}
    snakefile = Path(snakefile or REPO / "Snakefile").resolve()
    config_settings = ConfigSettings(configfiles=[Path(f).absolute() for f in configfiles])
    resources = ResourceSettings(cores=cores or available_cpu_count())
    workdir = Path(directory).absolute() if directory is not None else None
    with SnakemakeApi(OutputSettings(enable_file_logging=False)) as api:
        workflow_api = api.workflow(resource_settings=resources, config_settings=config_settings,
                                    snakefile=snakefile, workdir=workdir)
        workflow_api.dag(DAGSettings())  # sets the workflow's DAG settings
        workflow = workflow_api._workflow  # the loaded snakemake.workflow.Workflow
        chosen = _pick_rule(workflow, rule, script)
        _check_wildcards(chosen, wildcards)
        target = chosen.get_some_product()
        target = target.apply_wildcards(wildcards) if target is not None else None
        job = Job(chosen, DAG(workflow, rules=[chosen]), wildcards_dict=wildcards,
                  targetfile=target)
        script_path = _rule_script(chosen)
        smk = Snakemake(job.input, job.output, job.params, job.wildcards, job.threads,
                        job.resources, job.log, workflow.config, chosen.name,
                        0 if job.benchmark else None,
                        str(script_path.parent) if script_path else None)
        return pickle.loads(pickle.dumps(smk, protocol=4))


def _parse_by_hand(argv, prog):
    """Parse a by-hand command line: ``NAME=VALUE ...`` and options."""
    parser = argparse.ArgumentParser(
        prog=prog, description=(
            "Run this rule script by hand, as Snakemake would run it: the job is built from the "
            "workflow (Snakefile, config.yaml, --configfile) for the given wildcards."))
    parser.add_argument("wildcards", nargs="*", metavar="NAME=VALUE", help="the job's wildcards")
    parser.add_argument("--configfile", action="append", default=[], metavar="FILE",
                        help="a config file over config.yaml, as for snakemake; repeat for several")
    parser.add_argument("--rule", help="rule name (default: the rule that runs this script)")
    parser.add_argument("--directory", "-d", metavar="DIR",
                        help="working directory, as snakemake --directory (default: the current one, "
                             "which must then be the repository root)")
    parser.add_argument("--cores", "-c", type=int, help="as snakemake --cores (default: all)")
    parser.add_argument("--mock", metavar="JOB.yaml",
                        help="take the job from a YAML file instead (see microprop.workflow)")
    args = parser.parse_intermixed_args(argv)
    wildcards = {}
    for item in args.wildcards:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"wildcards are NAME=VALUE, got {item!r}")
        if name in wildcards:
            parser.error(f"wildcard {name} given twice")
        wildcards[name] = value
    args.wildcards = wildcards
    for f in args.configfile:
        if not Path(f).is_file():
            parser.error(f"--configfile {f}: no such file")
    if args.mock and (wildcards or args.configfile or args.rule or args.directory):
        parser.error("--mock takes the whole job from its file: give no wildcards or workflow options")
    return args


def _job_by_hand(script, argv):
    """The job of a script run by hand (``python scripts/x.py ...``).

    Returns the job and changes into its working directory; output and log
    folders are created.
    """
    args = _parse_by_hand(argv, prog=f"python {os.path.relpath(script)}")
    if args.mock:
        return job_from_yaml(args.mock)
    from snakemake.exceptions import WorkflowError

    if args.directory is None and Path.cwd().resolve() != REPO:
        raise SystemExit(
            f"{script.name}: run it from the repository root ({REPO}), where snakemake runs, "
            "or give the working directory with --directory DIR (as snakemake --directory)")
    try:
        smk = job_from_workflow(args.rule, args.wildcards, script=script,
                                configfiles=args.configfile, directory=args.directory,
                                cores=args.cores)
    except (JobError, WorkflowError) as err:
        raise SystemExit(f"{script.name}: {err}") from None
    if args.directory is not None:
        os.chdir(args.directory)
    for path in [*smk.output, *smk.log]:  # as snakemake.io.IOFile.prepare
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    return smk


def _log_uncaught_to(handler, rule):
    """Write an uncaught exception of the rule script into its log file too.

    Python prints the traceback on stderr, which Snakemake shows once and a
    cluster scheduler may keep elsewhere; the rule's log file, which the
    error summary names, then holds the message (e.g. the file, row or region
    that was wrong) and the traceback as well.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        record = logging.LogRecord("microprop.workflow", logging.ERROR, __file__, 0,
                                   "rule %s failed: %s: %s", (rule, exc_type.__name__, exc),
                                   (exc_type, exc, tb))
        try:
            handler.handle(record)
            handler.flush()
        except Exception:  # the log file itself is not writable: stderr still gets the traceback
            pass
        previous(exc_type, exc, tb)

    sys.excepthook = hook


def setup_script(namespace):
    """Return the job object of a rule script and set up logging.

    Parameters
    ----------
    namespace : dict
        The script's ``globals()``; holds ``snakemake`` when run by
        Snakemake, and ``__file__``.

    Returns
    -------
    object
        Snakemake's job object; run by hand, the job built by
        :func:`job_from_workflow` from the command line's wildcards and
        options (the process then works in the job's working directory), or
        by :func:`job_from_yaml` with ``--mock FILE``.

    Raises
    ------
    SystemExit
        Run by hand: on a bad command line (usage), outside the repository
        root without ``--directory``, or when the job cannot be built
        (unknown rule, wrong wildcards, invalid config; the message says
        which).
    """
    smk = namespace.get("snakemake")
    if smk is None:
        script = Path(namespace.get("__file__") or sys.argv[0]).resolve()
        smk = _job_by_hand(script, sys.argv[1:])
    import matplotlib

    matplotlib.use("Agg")
    handlers = [logging.StreamHandler(sys.stderr)]
    if len(smk.log):
        Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(smk.log[0], mode="w")
        handlers.append(file_handler)
        _log_uncaught_to(file_handler, getattr(smk, "rule", "?"))
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threads = str(getattr(smk, "threads", 1) or 1)
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if var == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            # numba rereads its environment at every compilation and refuses a
            # new thread count once its pool runs: limit the pool instead.
            import numba

            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
            continue
        os.environ.setdefault(var, threads)
    log.info("rule %s started", getattr(smk, "rule", "?"))
    return smk
