"""Rule learning_ceiling: the attainable and the noise-only R^2 of a specimen whose truth is known.

For a virtual specimen (or a virtual indentation of a real micrograph) the
generator wrote each indent's interaction-zone phase fractions. Per target
and split scheme, gradient-boosted trees on those true fractions are fitted
on the train + val crops and scored on the test crops the models of the
learning summary are scored on (``R2_attainable``), and the generator's own
random draws give the noise-only ceiling (``R2_noise_ceiling``, the expected
test R^2 of ``E[y | fractions]``; ``microprop.learning._ceiling`` gives the
equations).

Inputs
------
snakemake.input.dataset : str
    ``results/{specimen}/dataset.h5`` (``/meta/{area,batch,indent}``,
    ``/targets/*``, ``/splits/*``).
snakemake.input.truth : list of str
    Per truth source, a virtual specimen's truth folder
    ``resources/truth/{specimen}/{area}`` (its ``indents.csv``) or a virtual
    indentation's ``{batch}_truth.csv``; columns ``batch, indent,
    f_<phase>``.
snakemake.input.generator : list of str
    Per truth source, same order: the truth folder again (its
    ``truth.json`` and ``phase_properties.csv``) or the batch's
    ``{batch}_SIMULATED.json``.

Params
------
snakemake.params.areas : list of str
    The area of each truth source.
snakemake.params.targets : list of str
    ``E_GPa``, ``H_GPa``.
snakemake.params.splits : list of str
    Split schemes (``random``, ``blocked``).
snakemake.params.seed : int
    Seed of the folds, the trees and the Monte Carlo draws.
snakemake.params.n_draws : int, optional
    Monte Carlo draws of the phase properties (default
    ``microprop.learning._ceiling.N_DRAWS``).
snakemake.params.max_iter : int, optional
    Largest number of boosting iterations of the attainable model (default
    ``microprop.learning._ceiling.MAX_ITER``).

Outputs
-------
snakemake.output.table : CSV
    ``microprop.learning.CEILING_COLUMNS``: per target and split ``R2_attainable``,
    ``MAE_attainable`` (GPa), ``R2_attainable_cv``, ``n_iter``,
    ``R2_noise_ceiling``, ``R2_oracle``, ``R2_attainable_cv_all``,
    ``R2_noise_ceiling_all``, ``noise_var_mean`` and ``y_var_test`` (GPa^2).
snakemake.output.predictions : CSV
    ``target, split, index, y, attainable, oracle, noise_var`` per test crop
    (GPa, GPa^2).
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.learning_ceiling")


def main(snakemake):
    """Fit the attainable model and compute the noise-only ceiling; write both tables."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from pathlib import Path

    import numpy as np
    from microprop import data, io, learning
    from microprop.errors import InputError

    p = snakemake.params
    inp = snakemake.input
    truth_paths, gen_paths = [str(t) for t in inp.truth], [str(g) for g in inp.generator]
    areas = [str(a) for a in p.areas]
    if not (len(truth_paths) == len(gen_paths) == len(areas)) or not truth_paths:
        raise InputError(f"learning_ceiling: {len(truth_paths)} truth sources, {len(gen_paths)} "
                         f"generator files and {len(areas)} areas; expected as many, >= 1")
    seed = int(p.get("seed", 0) or 0)
    n_draws = int(p.get("n_draws", 0) or learning._ceiling.N_DRAWS)

    generators, indent_files = {}, []
    for t, g in zip(truth_paths, gen_paths):
        tp = Path(t)
        indent_files.append(str(tp / "indents.csv") if tp.is_dir() else t)
        generators[indent_files[-1]] = learning.read_generator(g)
    phases = list(next(iter(generators.values()))[0].index)
    for f, (pp, _) in generators.items():
        if list(pp.index) != phases:
            raise InputError(f"{f}: phases {list(pp.index)} differ from {phases} of the other "
                             "truth sources")
    truth = learning.read_truth_indents(indent_files, areas, phases)

    _, samples, _ = data.read_shard(inp.dataset, images=False)
    with data.open_dataset(inp.dataset) as fh:
        parts = {sc: data.read_split(fh, sc) for sc in p.splits}
    fractions, source = learning.align_truth(samples, truth, phases, return_source=True)
    targets = {t: samples[t].to_numpy(np.float64) for t in p.targets}
    oracle, noise = {}, {}
    for t in targets:
        oracle[t] = np.empty(len(samples))
        noise[t] = np.empty(len(samples))
        for f, (pp, noise_rel) in generators.items():
            sel = source == f
            if sel.any():
                oracle[t][sel], noise[t][sel] = learning.generator_moments(
                    fractions[sel], pp, noise_rel, t, n_draws=n_draws, seed=seed)
        log.info("%s: generator noise (phase draws + %.3g relative measurement noise): mean "
                 "Var(y | f) %.4g GPa^2 against Var(y) %.4g GPa^2 over %d samples", t,
                 float(np.mean([g[1] for g in generators.values()])), float(noise[t].mean()),
                 float(np.var(targets[t])), len(samples))
    table, preds = learning.ceiling_table(
        targets, parts, fractions, oracle, noise, seed=seed,
        max_iter=int(p.get("max_iter", 0) or learning._ceiling.MAX_ITER))
    io.write_table(table, snakemake.output.table)
    io.write_table(preds, snakemake.output.predictions)


if __name__ == "__main__":
    main(setup_script(globals()))
