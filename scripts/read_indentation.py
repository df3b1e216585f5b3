"""Rule script: read one batch's indentation export into the standard indents table.

snakemake.input.export : path
    The instrument export of one batch (CSV/TSV/TXT; KLA Express/NanoBlitz-like
    by default; metadata lines before the header are skipped).
snakemake.params.batch : str
    Batch name, written into the ``batch`` column.
snakemake.params.columns : dict or None
    Standard key -> header name in the file; keys ``indent, x, y, depth, load,
    stiffness, hardness, modulus`` (None: ``INDENT, X, Y, DEPTH, LOAD,
    STIFFNESS, HARDNESS, MODULUS``).
snakemake.params.units : dict or None
    Same keys -> unit string (None: um, um, nm, mN, N/m, GPa, GPa); see
    ``microprop.indentation.read_export``.
snakemake.output.indents : path (CSV)
    Accepted rows: ``batch, indent, x_um, y_um, depth_nm, load_mN,
    stiffness_N_per_m, H_GPa, E_GPa, source_row``.
snakemake.output.rejected : path (CSV)
    Rejected rows: the same columns plus ``reason``.

Raises InputError (naming the file) when no row is accepted.
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.read_indentation")


def main(snakemake):
    """Read the export of one batch; write the accepted and the rejected rows."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop.errors import InputError
    from microprop.indentation import read_export
    from microprop.io import write_table

    path = str(snakemake.input.export)
    accepted, rejected = read_export(path, batch=str(snakemake.params.batch),
                                     columns=snakemake.params.get("columns"),
                                     units=snakemake.params.get("units"))
    if accepted.empty:
        raise InputError(f"{path}: no valid indent in the export ({len(rejected)} rows rejected; "
                         f"first reasons: {list(rejected['reason'][:3])})")
    write_table(rejected, snakemake.output.rejected)
    write_table(accepted, snakemake.output.indents)
    log.info("wrote %d indents, %d rejected rows", len(accepted), len(rejected))


if __name__ == "__main__":
    main(setup_script(globals()))
