"""Rule porosity_evaluate: the trained classifier of one scale on the test maps.

snakemake.input.model : ``best.pt`` of rule porosity_train
snakemake.input.maps : ``results/{study}/maps.h5``
snakemake.params.split : the split the model was trained on
snakemake.params.device : ``auto``, ``cpu`` or ``cuda``
snakemake.output.predictions : CSV ``map, true, predicted, p_<class>...``
snakemake.output.metrics : JSON: accuracy with its Wilson 95 % interval,
    per-class recall, the confusion matrix (true -> predicted -> count)
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_evaluate")


def main(snakemake):
    """Predict the test maps; write the table and the metrics."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io as mio
    from microprop.learning import evaluate_classifier, resolve_device

    dev = resolve_device(snakemake.params.get("device", "auto"))
    table, metrics, conf = evaluate_classifier(snakemake.input.model, snakemake.input.maps,
                                               split=str(snakemake.params.split), device=dev)
    mio.write_table(table, snakemake.output.predictions)
    mio.write_json({**metrics, "confusion": conf.to_dict(orient="index")}, snakemake.output.metrics)
    log.info("%s: test accuracy %.3f (95 %% CI %.3f-%.3f) on %d maps", metrics["scale"],
             metrics["accuracy"], *metrics["accuracy_ci95"], metrics["n_maps"])


if __name__ == "__main__":
    main(setup_script(globals()))
