"""Effective electrical conductivity of a pixelated two-dimensional microstructure.

The third study (ceramic-metal composites of Li4Ti5O12 and Ni,
``../shared/references/cnn_conductivity_lto_ni_poster.txt``) relates SEM
images to one measured conductivity per sample. To generate such data with a
known physical truth, the conductivity of a microstructure is *solved*, not
guessed from its metal fraction: steady conduction, ``div(sigma grad phi) =
0``, on the pixel grid.

Discretisation (cell-centred finite volumes, the standard two-point flux
scheme of e.g. Patankar, *Numerical Heat Transfer and Fluid Flow*, 1980,
section 4.2; also the resistor-network form used in percolation studies,
Kirkpatrick, Rev. Mod. Phys. 45, 574, 1973):

* one unknown potential ``phi`` per pixel centre;
* between two neighbouring pixels of conductivities ``s1`` and ``s2`` the
  face conductance is their harmonic mean ``2 s1 s2 / (s1 + s2)`` (two
  half-pixels in series; per unit thickness the pixel size cancels, since a
  face of length ``a`` at a centre distance ``a`` conducts ``s * a / a``);
* on the two faces normal to the flow ``axis`` the potential is fixed at 1
  (inlet, index 0 along ``axis``) and 0 (outlet, last index); a boundary
  pixel's centre lies half a pixel from the electrode, so its conductance
  to it is ``2 s``;
* the other two faces are insulating (no flux).

This makes the scheme exact for laminates: layers parallel to the flow give
the arithmetic mean of the layer conductivities, layers in series the
harmonic mean (see ``tests/test_conduction.py``).

The linear system is symmetric positive definite. By default it is solved
by conjugate gradients preconditioned by one V-cycle of algebraic multigrid
(pyamg, classical Ruge-Stuben; Ruge and Stuben, in *Multigrid Methods*, SIAM
1987), which copes with contrasts of 1e6-1e8 between two phases in 15-110
iterations (all refinement passes); ``method="direct"`` uses a sparse LU instead
(SuperLU), faster on maps graded over many decades within a few pixels,
where the multigrid needs hundreds of iterations. Either way the solution is
refined in extended precision against the residual in flux form, and
checked on that residual and on current conservation: the current entering
through the inlet must equal the one leaving through the outlet within
:data:`CONSERVATION_RTOL` (``conservation_error`` of the result), else
:class:`ConvergenceError`.

The effective conductivity along ``axis`` is ``I / (dV / L) / A`` with
``dV = 1`` the potential drop, ``L`` the sample's length along ``axis`` and
``A`` its cross-section (per unit thickness: the length of the electrode),
both in pixels, so ``sigma_eff = I * L / A`` in the unit of ``sigma``
(S/cm here).
"""
from __future__ import annotations

import logging
import time

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import cg

from ..errors import InputError

log = logging.getLogger(__name__)

#: Largest relative difference between inlet and outlet current accepted.
CONSERVATION_RTOL = 1e-6
#: Relative tolerance of each float64 correction solve of the refinement.
INNER_RTOL = 1e-6
#: Most refinement passes (each one a preconditioned CG solve).
MAX_PASSES = 8


class ConvergenceError(RuntimeError):
    """The conduction solve did not reach its residual or conservation tolerance.

    Not bad input: the message names the residual reached, the tolerance and
    the iterations, so a caller can raise ``maxiter`` or loosen ``rtol``.
    """


def _check_sigma(sigma, name="effective_conductivity"):
    """float64 C-contiguous copy of a valid conductivity image."""
    try:
        s = np.asarray(sigma, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: sigma is not numeric ({exc})") from None
    if s.ndim != 2:
        raise InputError(f"{name}: sigma has shape {s.shape}; expected a 2-D (H, W) image")
    if s.shape[0] < 2 or s.shape[1] < 2:
        raise InputError(f"{name}: sigma has shape {s.shape}; expected at least 2 x 2 pixels")
    if not np.all(np.isfinite(s)):
        raise InputError(f"{name}: sigma has {int(np.count_nonzero(~np.isfinite(s)))} non-finite "
                         "pixel(s); expected finite conductivities in S/cm")
    if not np.all(s > 0):
        raise InputError(f"{name}: sigma has {int(np.count_nonzero(~(s > 0)))} pixel(s) <= 0 "
                         f"(min {s.min():.3g}); expected conductivities > 0 S/cm (give an "
                         "insulating phase a small positive value)")
    return np.ascontiguousarray(s)


def _system(s):
    """Matrix, right-hand side and boundary conductances for flow along axis 1.

    Row-major unknowns ``i = r * W + c``; potential 1 on the left face
    (column 0), 0 on the right face (column W - 1).
    """
    h, w = s.shape
    n = h * w
    gx = 2.0 * s[:, :-1] * s[:, 1:] / (s[:, :-1] + s[:, 1:])        # (H, W-1) faces between columns
    gy = 2.0 * s[:-1, :] * s[1:, :] / (s[:-1, :] + s[1:, :])        # (H-1, W) faces between rows
    g_in = 2.0 * s[:, 0]                                             # half-pixel to the electrodes
    g_out = 2.0 * s[:, -1]
    diag = np.zeros((h, w))
    diag[:, :-1] += gx
    diag[:, 1:] += gx
    diag[:-1, :] += gy
    diag[1:, :] += gy
    diag[:, 0] += g_in
    diag[:, -1] += g_out
    # off-diagonals: -gx between (r, c) and (r, c+1); zero across row ends
    offx = np.zeros((h, w))
    offx[:, :-1] = gx
    offx = offx.ravel()[:-1]
    offy = gy.ravel()
    A = sparse.diags([diag.ravel(), -offx, -offx, -offy, -offy], [0, 1, -1, w, -w],
                     shape=(n, n), format="csr")
    b = np.zeros((h, w))
    b[:, 0] = g_in
    return A, b.ravel(), (gx, gy, g_in, g_out)


def _flux_residual(P, faces):
    """Residual ``b - A phi`` in flux form, in the precision of ``P``.

    Each face current ``g (phi_j - phi_i)`` is computed once and added to
    one pixel and taken from the other, so the residual sums to ``I_in -
    I_out`` up to the rounding of the currents themselves, however large
    the conductances (the assembled matrix's diagonal, a rounded sum of four
    conductances, leaks ``eps * g * phi`` per pixel instead).
    """
    gx, gy, g_in, g_out = faces
    r = np.zeros_like(P)
    fx = gx * (P[:, 1:] - P[:, :-1])
    r[:, :-1] += fx
    r[:, 1:] -= fx
    fy = gy * (P[1:, :] - P[:-1, :])
    r[:-1, :] += fy
    r[1:, :] -= fy
    r[:, 0] += g_in * (1 - P[:, 0])
    r[:, -1] -= g_out * P[:, -1]
    return r


METHODS = ("ruge_stuben", "smoothed_aggregation", "direct")


def _correction_solver(A, method, maxiter):
    """A function ``rf, rtol -> (d, iterations)`` that solves ``A d = rf`` in float64."""
    from scipy.sparse.linalg import splu

    if method == "direct":
        # SuperLU with a minimum-degree ordering of A^T + A (A is symmetric):
        # about 10 s and 2.7 GB for 1024 x 1024 px, exact whatever the contrast
        lu = splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
        return lambda rf, rtol: (lu.solve(rf), 0)
    import pyamg

    if method == "ruge_stuben":
        # measured on two-phase images at a contrast of 3e7 and on graded (interphase)
        # maps: direct interpolation halved the iterations of classical interpolation,
        # a strength threshold of 0.1 (default 0.25) took 20-40 % fewer; an exact LU on
        # the coarsest level (a pseudo-inverse may drop the near-null modes of
        # floating metal clusters)
        ml = pyamg.ruge_stuben_solver(A, strength=("classical", {"theta": 0.1}), interpolation="direct",
                                      max_coarse=500, coarse_solver="splu")
    else:
        ml = pyamg.smoothed_aggregation_solver(A, symmetry="symmetric", max_coarse=500, coarse_solver="splu")
    M = ml.aspreconditioner(cycle="V")

    def solve(rf, rtol):
        count = [0]
        d, _ = cg(A, rf, rtol=rtol, atol=0.0, maxiter=int(maxiter), M=M,
                  callback=lambda xk: count.__setitem__(0, count[0] + 1))
        return d, count[0]

    return solve


def effective_conductivity(sigma, axis=1, rtol=1e-9, maxiter=300, return_field=False,
                           method="ruge_stuben"):
    """Effective conductivity of a 2-D conductivity image along one axis.

    Finite-volume solve of ``div(sigma grad phi) = 0`` (see the module
    docstring: harmonic-mean face conductances, Patankar 1980 section 4.2),
    potential 1 and 0 on the two faces normal to ``axis``, insulating side
    faces; ``sigma_eff = I * L / A`` with ``I`` the current through the
    inlet face at unit potential drop, ``L`` the image length along
    ``axis`` and ``A`` its length across, in pixels (the pixel size cancels
    in 2-D per unit thickness).

    The potential is refined in extended precision (``numpy.longdouble``):
    ``phi <- phi + A^-1 r`` with the residual ``r = b - A phi`` computed in
    flux form (each face current once, so that ``sum(r) = I_in - I_out``
    exactly up to rounding of the currents) and each correction solved in
    float64 (mixed-precision iterative refinement, Wilkinson 1963; Higham,
    *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002, ch. 12).
    Without it, a non-percolating image at a contrast of 1e7 and more
    conserved current only to 1e-4..1e-5: the float64 matrix's diagonal, a
    rounded sum of metal conductances, leaks ``eps * sigma_metal`` per pixel.

    Parameters
    ----------
    sigma : array_like, shape (H, W), float
        Pixel conductivities, S/cm (any unit: the result has the same), all
        finite and > 0; H, W >= 2.
    axis : {0, 1}
        Direction of the mean current: 1 along the columns' index (x, left
        to right), 0 along the rows' index (y, top to bottom).
    rtol : float
        Relative tolerance on the residual ``||b - A phi|| / ||b||`` (``b``:
        the electrode terms); refinement continues until it is met *and*
        inlet and outlet currents agree within :data:`CONSERVATION_RTOL`.
    maxiter : int
        Most conjugate-gradient iterations per refinement pass (AMG methods).
    return_field : bool
        Also return the potential field.
    method : {'ruge_stuben', 'smoothed_aggregation', 'direct'}
        Correction solver: conjugate gradients preconditioned by one V-cycle
        of a pyamg hierarchy (classical Ruge-Stuben, or smoothed
        aggregation, which needed 10-50 times more iterations on two-phase
        images), or a sparse LU factorisation (SuperLU). Ruge-Stuben CG
        takes 15-60 iterations on two-phase images at contrasts of 1e6-1e8;
        on maps graded over many decades within a few pixels (a conducting
        interphase, ``microprop.virtual._composite.conductivity_map``) it
        took 350-1200, where the LU, 0.1 s at 192 x 192 px, 1.7 s at 512 x
        512 and 10 s at 1024 x 1024 (2.7 GB), is the faster choice.

    Returns
    -------
    result : dict
        ``sigma_eff`` (float, S/cm: the mean of inlet and outlet current
        times ``L / A``), ``current_in`` and ``current_out`` (float, current
        per unit thickness at unit potential drop, in the unit of sigma
        times cm / cm), ``conservation_error`` (float, ``|I_in - I_out| /
        max(I_in, I_out)``), ``residual`` (float, relative residual),
        ``iterations`` (int, CG iterations, all passes; 0 for 'direct'),
        ``passes`` (int, refinement passes), ``setup_s`` and ``solve_s``
        (float, seconds), ``axis``; with ``return_field``, ``phi``
        (numpy.ndarray, shape (H, W), float64, potential in units of the
        drop, 1 at the inlet face).

    Raises
    ------
    InputError
        If ``sigma`` is not a finite, strictly positive 2-D array of at
        least 2 x 2 pixels, or ``axis``/``method``/``rtol``/``maxiter`` is
        invalid.
    ConvergenceError
        (a ``RuntimeError``) if a CG solve makes no progress in ``maxiter``
        iterations, or the refinement stalls or ends (:data:`MAX_PASSES`)
        above ``rtol`` or with currents not conserved within
        :data:`CONSERVATION_RTOL`; the message names the residual reached.
    """
    s = _check_sigma(sigma)
    if axis not in (0, 1):
        raise InputError(f"effective_conductivity: axis={axis!r}; expected 0 or 1")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise InputError(f"effective_conductivity: rtol={rtol!r}; expected 0 < rtol < 1")
    if int(maxiter) < 1:
        raise InputError(f"effective_conductivity: maxiter={maxiter!r}; expected >= 1")
    if method not in METHODS:
        raise InputError(f"effective_conductivity: method={method!r}; expected one of {METHODS}")
    if axis == 0:
        s = np.ascontiguousarray(s.T)
    h, w = s.shape
    t0 = time.perf_counter()
    A, b, faces = _system(s)
    g_in, g_out = faces[2], faces[3]
    correct = _correction_solver(A, method, maxiter)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bnorm = float(np.linalg.norm(b))
    P = np.zeros((h, w), dtype=np.longdouble)
    r = b.reshape(h, w).astype(np.longdouble)
    iterations, passes = 0, 0
    residual, cons = 1.0, np.inf
    while True:
        passes += 1
        rf = r.astype(np.float64).ravel()
        # the first solve to rtol (enough for most images), corrections to INNER_RTOL
        inner_rtol = max(float(rtol), 1e-12) if passes == 1 else INNER_RTOL
        d, its = correct(rf, inner_rtol)
        iterations += its
        inner = float(np.linalg.norm(rf - A @ d) / np.linalg.norm(rf))
        log.debug("pass %d: %d iterations, inner residual %.2g", passes, its, inner)
        if not inner < 0.5:
            raise ConvergenceError(
                f"effective_conductivity: conjugate gradients stopped at relative residual {inner:.3g} "
                f"after {its} iterations (refinement pass {passes}, residual of the system "
                f"{residual:.3g}, tolerance {rtol:.3g}); raise maxiter ({maxiter}) or use method='direct'")
        P += d.reshape(h, w)
        r = _flux_residual(P, faces)
        previous = residual
        residual = float(np.linalg.norm(r)) / bnorm
        i_in = np.sum(g_in * (1 - P[:, 0]))
        i_out = np.sum(g_out * P[:, -1])
        cons = float(abs(i_in - i_out) / max(abs(i_in), abs(i_out)))
        if residual <= rtol and cons <= CONSERVATION_RTOL:
            break
        if passes >= MAX_PASSES or residual > 0.5 * previous:
            raise ConvergenceError(
                f"effective_conductivity: stopped at relative residual {residual:.3g} (tolerance "
                f"{rtol:.3g}) with inlet current {float(i_in):.6g} and outlet current {float(i_out):.6g} "
                f"differing by {cons:.3g} (relative; expected <= {CONSERVATION_RTOL:g}) after "
                f"{passes} refinement passes, {iterations} iterations")
    i_in, i_out = float(i_in), float(i_out)
    P = P.astype(np.float64)
    solve_s = time.perf_counter() - t0
    out = {
        "sigma_eff": 0.5 * (i_in + i_out) * w / h,
        "current_in": i_in,
        "current_out": i_out,
        "conservation_error": cons,
        "residual": residual,
        "iterations": iterations,
        "passes": passes,
        "setup_s": setup_s,
        "solve_s": solve_s,
        "axis": axis,
    }
    log.debug("effective_conductivity: %d x %d px, axis %d, %s: %.6g S/cm, %d iterations, residual %.2g, "
              "conservation %.2g, %.2f + %.2f s", h, w, axis, method, out["sigma_eff"], iterations, residual,
              cons, setup_s, solve_s)
    if return_field:
        out["phi"] = P.T.copy() if axis == 0 else P.copy()
    return out


def two_phase_conductivity(bright, sigma_bright, sigma_dark, axes=(0, 1), **kwargs):
    """Effective conductivity of a two-phase image along each axis, and their geometric mean.

    Parameters
    ----------
    bright : array_like, shape (H, W), bool
        True where the bright (conducting, e.g. Ni) phase is.
    sigma_bright, sigma_dark : float or array_like of shape (H, W)
        Conductivities of the two phases, S/cm, > 0 (an array gives a
        pixel-wise conductivity to that phase, e.g. a contact layer).
    axes : sequence of {0, 1}
        Directions solved.
    **kwargs
        Passed to :func:`effective_conductivity` (``rtol``, ``maxiter``,
        ``method``).

    Returns
    -------
    dict
        ``sigma_axis0``/``sigma_axis1`` (float, S/cm) for each axis solved,
        ``sigma_S_per_cm`` (float, S/cm): the geometric mean over the axes,
        the isotropic estimate (exact for the determinant of a 2-D
        conductivity tensor with principal axes along the image axes),
        ``fraction`` (float, bright area fraction), ``iterations`` (int, all
        solves), ``conservation_error`` (float, the largest) and ``solve_s``
        (float, seconds, all solves).

    Raises
    ------
    InputError
        If ``bright`` is not a 2-D boolean (or 0/1) image of at least 2 x 2
        pixels, a conductivity is not finite and > 0, or ``axes`` is empty
        or holds something other than 0 and 1.
    ConvergenceError
        As :func:`effective_conductivity`.
    """
    m = np.asarray(bright)
    if m.ndim != 2:
        raise InputError(f"two_phase_conductivity: bright has shape {m.shape}; expected a 2-D (H, W) mask")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise InputError("two_phase_conductivity: bright must be boolean (or 0/1); "
                             f"got dtype {m.dtype} with other values")
        m = m.astype(bool)
    axes = tuple(axes)
    if not axes or any(a not in (0, 1) for a in axes):
        raise InputError(f"two_phase_conductivity: axes={axes!r}; expected a non-empty subset of (0, 1)")
    for name, v in (("sigma_bright", sigma_bright), ("sigma_dark", sigma_dark)):
        v = np.asarray(v, dtype=np.float64)
        if not (np.all(np.isfinite(v)) and np.all(v > 0)):
            raise InputError(f"two_phase_conductivity: {name} must be finite and > 0 S/cm; got "
                             f"min {np.min(v):.3g}")
    sigma = np.where(m, sigma_bright, sigma_dark).astype(np.float64)
    out = {"fraction": float(m.mean())}
    logs, iters, cons, secs = [], 0, 0.0, 0.0
    for a in axes:
        r = effective_conductivity(sigma, axis=a, **kwargs)
        out[f"sigma_axis{a}"] = r["sigma_eff"]
        logs.append(np.log(r["sigma_eff"]))
        iters += r["iterations"]
        cons = max(cons, r["conservation_error"])
        secs += r["setup_s"] + r["solve_s"]
    out["sigma_S_per_cm"] = float(np.exp(np.mean(logs)))
    out["iterations"] = iters
    out["conservation_error"] = cons
    out["solve_s"] = secs
    return out
