"""Instrument exports of nanoindentation: reader and writer.

:func:`read_export` reads one batch's KLA Express/NanoBlitz-like export
(CSV, TSV or semicolon-separated; metadata lines before the header and a
units line under it are skipped) with a column map (:data:`KLA_COLUMNS` by
default) and a unit map (:data:`KLA_UNITS`) into the standard indents table
(:data:`STANDARD_COLUMNS`); rows with a missing, non-numeric or
non-physical value go into a rejection table with a reason, never silently
dropped. :func:`write_export` writes such an export, as the virtual
specimens do.

Units follow the names: ``x_um``, ``depth_nm``, ``load_mN``,
``stiffness_N_per_m``, ``E_GPa``, ``H_GPa``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import atomic_path

log = logging.getLogger(__name__)

STANDARD_COLUMNS = ["batch", "indent", "x_um", "y_um", "depth_nm", "load_mN",
                    "stiffness_N_per_m", "H_GPa", "E_GPa", "source_row"]


#: Default header names of a KLA Express/NanoBlitz-like export.
KLA_COLUMNS = {"indent": "INDENT", "x": "X", "y": "Y", "depth": "DEPTH", "load": "LOAD",
               "stiffness": "STIFFNESS", "hardness": "HARDNESS", "modulus": "MODULUS"}


#: Default units of that export.
KLA_UNITS = {"x": "um", "y": "um", "depth": "nm", "load": "mN", "stiffness": "N/m",
             "hardness": "GPa", "modulus": "GPa"}


# export key -> (standard column, {unit: factor to the standard unit})
_LEN_UM = {"um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}


_LEN_NM = {u: f * 1e3 for u, f in _LEN_UM.items()}


_PRESSURE_GPA = {"GPa": 1.0, "MPa": 1e-3, "kPa": 1e-6, "Pa": 1e-9}


_QUANTITIES = {
    "x": ("x_um", _LEN_UM),
    "y": ("y_um", _LEN_UM),
    "depth": ("depth_nm", _LEN_NM),
    "load": ("load_mN", {"mN": 1.0, "uN": 1e-3, "N": 1e3}),
    # 1 mN/nm = 1e-3 N / 1e-9 m = 1e6 N/m; 1 uN/nm = 1e3 N/m
    "stiffness": ("stiffness_N_per_m", {"N/m": 1.0, "kN/m": 1e3, "MN/m": 1e6, "mN/nm": 1e6,
                                        "uN/nm": 1e3, "mN/um": 1e3, "N/um": 1e6}),
    "hardness": ("H_GPa", _PRESSURE_GPA),
    "modulus": ("E_GPa", _PRESSURE_GPA),
}


_REQUIRED_KEYS = ("indent", "x", "y", "hardness", "modulus")


_OPTIONAL_KEYS = ("depth", "load", "stiffness")


def _norm_unit(unit):
    """Unit string with ``µ``/``μ`` as ``u`` and ``micron(s)`` as ``um``."""
    u = str(unit).strip().replace("\u00b5", "u").replace("\u03bc", "u")
    return {"micron": "um", "microns": "um"}.get(u, u)


def _unit_factor(key, unit, path):
    """Factor from ``unit`` to the standard unit of export key ``key``."""
    table = _QUANTITIES[key][1]
    u = _norm_unit(unit)
    if u not in table:
        raise InputError(f"unknown unit {unit!r} for {key!r} in the config's `indentation.units` "
                         f"map (set for the export {path}); expected one of {sorted(table)}")
    return table[u]


def write_export(df, path, style="kla", units=None, sep=",", header_lines=()):
    """Write indents as a KLA Express/NanoBlitz-like export (atomically).

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``indent, x_um, y_um, depth_nm, load_mN, stiffness_N_per_m,
        H_GPa, E_GPa``.
    path : path-like
        Output file.
    style : {"kla"}
        Column names ``INDENT, X, Y, DEPTH, LOAD, STIFFNESS, HARDNESS, MODULUS``.
    units : dict, optional
        Units to write, keyed like :data:`KLA_UNITS` (default those units,
        um, nm, mN, N/m, GPa); e.g. ``{"load": "uN", "modulus": "MPa"}``.
    sep : str
        Field separator (``","``, ``"\\t"`` or ``";"``).
    header_lines : sequence of str
        Metadata lines written before the header (as instruments do).

    Raises
    ------
    InputError
        On an unknown style or unit, or a missing column.
    """
    if style != "kla":
        raise InputError(f"{path}: unknown export style {style!r}; expected 'kla'")
    units = {**KLA_UNITS, **(units or {})}
    missing = [std for std, _table in _QUANTITIES.values() if std not in df.columns]
    if "indent" not in df.columns:
        missing.insert(0, "indent")
    if missing:
        raise InputError(f"{path}: cannot write export, table lacks {missing}")
    out = pd.DataFrame({KLA_COLUMNS["indent"]: df["indent"].astype(int).to_numpy()})
    for key, (std, _table) in _QUANTITIES.items():
        out[KLA_COLUMNS[key]] = df[std].to_numpy(float) / _unit_factor(key, units[key], path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            for line in header_lines:
                fh.write(f"{line}\n")
            out.to_csv(fh, index=False, sep=sep, float_format="%.10g", lineterminator="\n")


def _read_text(path):
    """Text of the export file (UTF-8, else Latin-1); raises InputError if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: indentation export not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read indentation export ({exc})") from exc
    for enc in ("utf-8-sig", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise InputError(f"{path}: indentation export is not text")  # pragma: no cover (latin-1 decodes all)


def _split(line, sep):
    """Fields of one line, stripped of blanks and quotes."""
    return [f.strip().strip('"').strip() for f in line.split(sep)]


def _find_header(lines, wanted, path, max_lines=200):
    """Locate the header line and separator: the first line holding all ``wanted`` names."""
    wanted_l = {w.lower() for w in wanted}
    best = (0, None, None)  # score, line index, fields of the best partial match
    first = None            # fields of the first non-empty line, split the widest way
    for i, line in enumerate(lines[:max_lines]):
        if not line.strip():
            continue
        for sep in (",", "\t", ";"):
            fields = _split(line, sep)
            score = len(wanted_l & {f.lower() for f in fields})
            if score == len(wanted_l):
                return i, sep, fields
            if score > best[0]:
                best = (score, i, fields)
        if first is None:
            first = (i, max((_split(line, s) for s in (",", "\t", ";")), key=len))
    if first is None:
        raise InputError(f"{path}: the indentation export is empty (no header line in its first "
                         f"{max_lines} lines); expected a header with the columns {list(wanted)}")
    if best[1] is None:
        best = (0, *first)
    found = best[2]
    present = {f.lower() for f in found}
    missing = [w for w in wanted if w.lower() not in present]
    raise InputError(f"{path}: indentation export lacks column(s) {missing}; "
                     f"found columns {found} (on line {best[1] + 1 if best[1] is not None else '?'}); "
                     "set the column map of this area in the config")


def _parse_rows(lines, sep):
    """Split the header line and the data lines under it (blank lines skipped).

    Returns the header names, the data rows padded/truncated to the header
    width (stripped strings), and per row the count of non-empty fields
    beyond the header (trailing empty fields, as some instruments write, are
    ignored).
    """
    import csv

    reader = csv.reader(lines, delimiter=sep, quotechar='"', skipinitialspace=True)
    header = [f.strip() for f in next(reader)]
    width = len(header)
    rows, extra = [], []
    for rec in reader:
        rec = [f.strip() for f in rec]
        if not any(rec):
            continue
        extra.append(sum(1 for f in rec[width:] if f))
        rows.append((rec + [""] * width)[:width])
    return header, rows, extra


def _export_maps(path, columns, units):
    """Column and unit maps over the defaults, the mapped keys (file order) and their unit factors.

    Raises InputError on an unknown key or unit, or a required key mapped to None.
    """
    columns = {**KLA_COLUMNS, **(columns or {})}
    units = {**KLA_UNITS, **(units or {})}
    unknown = sorted(set(columns) - set(KLA_COLUMNS)) + sorted(set(units) - set(KLA_UNITS))
    if unknown:
        raise InputError(f"{path}: unknown column/unit key(s) {unknown}; expected {list(KLA_COLUMNS)}")
    for key in _REQUIRED_KEYS:
        if columns.get(key) is None:
            raise InputError(f"{path}: column map must name the file's {key!r} column")
    present_keys = [k for k in KLA_COLUMNS if columns.get(k) is not None]
    factors = {k: _unit_factor(k, units[k], path) for k in present_keys if k != "indent"}
    return columns, present_keys, factors


def _numeric(series, sep):
    """Float values of a string column (NaN where not numeric); a decimal comma with ``;``."""
    s = series.str.replace(",", ".", regex=False) if sep == ";" else series
    return pd.to_numeric(s, errors="coerce")


def _read_mapped_columns(path, columns, present_keys):
    """The export's mapped columns as strings, with the separator and extra-field counts.

    Returns ``(raw, cols, sep, extra)``: a DataFrame of the data rows (one
    column per mapped header), standard key -> header name found, the
    separator, and per row the count of non-empty fields beyond the header.
    """
    text = _read_text(path)
    lines = text.splitlines()
    wanted = [columns[k] for k in present_keys]
    hdr, sep, _ = _find_header(lines, wanted, path)
    header, rows, extra = _parse_rows(lines[hdr:], sep)
    raw = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header)
    lower = {c.lower(): c for c in reversed(header)}      # first occurrence wins
    cols = {k: lower[columns[k].lower()] for k in present_keys}
    raw = pd.DataFrame({c: raw[c].astype(str) for c in dict.fromkeys(cols.values())})
    return raw, cols, sep, extra


def _skip_units_line(raw, extra, cols, present_keys, sep, path):
    """Drop a first data row whose mapped fields are all non-numeric (some non-empty): a units line."""
    if len(raw):
        first = raw.iloc[0][[cols[k] for k in present_keys]]
        if _numeric(first, sep).isna().all() and (first != "").any():
            log.info("%s: skipping units line under the header: %s", path, list(first))
            raw = raw.iloc[1:].reset_index(drop=True)
            extra = extra[1:]
    return raw, extra


def _standard_values(raw, cols, factors, sep, batch, reasons):
    """Standard-unit table (``batch``, standard columns, ``source_row``) of the raw rows.

    Appends a "missing"/"non-numeric" reason to ``reasons[i]`` for each
    unreadable value of row ``i``; unmapped columns are NaN.
    """
    n = len(raw)
    out = pd.DataFrame({"batch": [str(batch)] * n})
    for key in KLA_COLUMNS:
        std = "indent" if key == "indent" else _QUANTITIES[key][0]
        if key not in cols:
            out[std] = np.nan
            continue
        name = cols[key]
        vals = _numeric(raw[name], sep)
        for i in np.flatnonzero(vals.isna().to_numpy()):
            txt = raw[name].iat[i]
            reasons[i].append(f"missing {name}" if txt == "" or txt.lower() in ("nan", "na", "n/a")
                              else f"non-numeric {name} {txt!r}")
        out[std] = vals.to_numpy(float) * (1.0 if key == "indent" else factors[key])
    out["source_row"] = np.arange(1, n + 1)
    return out


def _check_rows(out, ind, cols, reasons):
    """Append a reason to ``reasons[i]`` for a non-integer indent id or a non-physical value."""
    for i in np.flatnonzero(np.isfinite(ind) & (ind != np.round(ind))):
        reasons[i].append(f"{cols['indent']} {ind[i]:g} is not an integer")
    checks = [("E_GPa", 0.0, 500.0, "modulus", "GPa"), ("H_GPa", 0.0, 50.0, "hardness", "GPa"),
              ("depth_nm", 0.0, 10000.0, "depth", "nm"), ("load_mN", 0.0, np.inf, "load", "mN"),
              ("stiffness_N_per_m", 0.0, np.inf, "stiffness", "N/m")]
    for std, lo, hi, key, unit in checks:
        if key not in cols:
            continue
        v = out[std].to_numpy(float)
        bad = np.isfinite(v) & ~((v > lo) & (v <= hi))
        rng_txt = f"0 < {key} <= {hi:g} {unit}" if np.isfinite(hi) else f"{key} > 0 {unit}"
        for i in np.flatnonzero(bad):
            reasons[i].append(f"{key} = {v[i]:g} {unit} (column {cols[key]!r}) is outside the "
                              f"physical range: expected {rng_txt}")


def _check_unique_ids(ind, source_row, cols, path):
    """Raise InputError when indent ids repeat (naming the ids and their data rows)."""
    # duplicate ids are an inconsistent file, not a bad row: refuse the file
    ids = pd.Series(ind, index=source_row).dropna()
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        groups = {int(k): list(v.index) for k, v in dup.groupby(dup)}
        shown = dict(list(groups.items())[:5])
        raise InputError(f"{path}: duplicate {cols['indent']} id(s) {list(groups)[:10]} "
                         f"({len(groups)} in all) at data rows {shown}; each indent needs a unique id")


def _split_rejected(out, reasons):
    """``(accepted, rejected)``: rows without / with a reason; ``rejected`` gets the ``reason`` column."""
    reason = np.array(["; ".join(r) for r in reasons], dtype=object)
    bad = reason != ""
    accepted = out.loc[~bad, STANDARD_COLUMNS].reset_index(drop=True)
    accepted["indent"] = accepted["indent"].astype(np.int64)
    rejected = out.loc[bad, STANDARD_COLUMNS].reset_index(drop=True)
    rejected["reason"] = reason[bad]
    return accepted, rejected


def read_export(path, batch, columns=None, units=None):
    """Read one batch's indentation export into the standard indents table.

    The separator (comma, tab or semicolon) is sniffed, and the header is the
    first line (within the first 200) that holds all mapped column names
    (case-insensitive), so metadata lines before it are skipped. A line right
    under the header whose mapped fields are all non-numeric (some of them
    non-empty, e.g. ``,um,um,nm,...``) is taken as a units line and skipped. With a semicolon separator a decimal comma is
    accepted.

    Parameters
    ----------
    path : path-like
        Export file (CSV/TSV/TXT).
    batch : str
        Batch name written into the ``batch`` column.
    columns : dict, optional
        Standard key -> header name in the file, keys ``indent, x, y, depth,
        load, stiffness, hardness, modulus`` (defaults :data:`KLA_COLUMNS`).
        ``depth``, ``load`` and ``stiffness`` may be mapped to ``None`` when
        the file lacks them (their columns are then NaN and not checked).
    units : dict, optional
        Key -> unit of that column in the file (defaults :data:`KLA_UNITS`):
        lengths ``um, nm, mm, m``; load ``mN, uN, N``; stiffness ``N/m,
        kN/m, MN/m, mN/nm (= 1e6 N/m), uN/nm (= 1e3 N/m), mN/um, N/um``;
        H and E ``GPa, MPa, kPa, Pa``. ``µ`` is accepted for ``u``.

    Returns
    -------
    accepted : pandas.DataFrame
        Columns ``batch, indent, x_um, y_um, depth_nm, load_mN,
        stiffness_N_per_m, H_GPa, E_GPa, source_row`` (``source_row``: the
        1-based data row in the file, counted after the header and a units
        line), in file order.
    rejected : pandas.DataFrame
        Same columns (values converted where readable) plus ``reason``:
        rows with a missing or non-numeric value, a non-integer INDENT,
        non-empty fields beyond the header (trailing empty ones are fine), or a
        non-physical value (E outside (0, 500] GPa, H outside (0, 50] GPa,
        depth outside (0, 10000] nm, load <= 0, stiffness <= 0). Never
        silently dropped.

    Raises
    ------
    InputError
        If the file is missing or unreadable, a mapped column is missing (the
        message names the file, the column and the columns found), a unit or
        column key is unknown, or INDENT ids repeat (the message names the
        ids and their rows).
    """
    path = Path(path)
    columns, present_keys, factors = _export_maps(path, columns, units)
    raw, cols, sep, extra = _read_mapped_columns(path, columns, present_keys)
    raw, extra = _skip_units_line(raw, extra, cols, present_keys, sep, path)
    n = len(raw)
    reasons = [[f"{e} field(s) beyond the header"] if e else [] for e in extra]
    out = _standard_values(raw, cols, factors, sep, batch, reasons)
    ind = out["indent"].to_numpy(float)
    _check_rows(out, ind, cols, reasons)
    _check_unique_ids(ind, out["source_row"], cols, path)
    accepted, rejected = _split_rejected(out, reasons)
    log.info("%s: batch %s, %d data rows: %d accepted, %d rejected", path, batch, n,
             len(accepted), len(rejected))
    if len(rejected):
        log.warning("%s: rejected rows (first 5): %s", path,
                    "; ".join(f"row {r}: {m}" for r, m in zip(rejected["source_row"][:5], rejected["reason"][:5])))
    return accepted, rejected
