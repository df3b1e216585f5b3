"""Shared characteristic patterns (the GO-cement DTD study, SI section 4, Fig. 7, Fig. S34) against known answers."""
import math

import numpy as np
import pytest
from microprop.errors import InputError
from microprop.microstructure._patterns import (
    _REVERSE,
    _SWAP,
    _apply_move,
    _edge_weights,
    _move_delta,
    _path_length,
    anneal_order,
    characteristic_patterns,
    default_level,
    difference_matrix,
    mean_pair_difference,
    pattern_groups,
    shared_fraction,
    shared_pattern,
    total_gradient,
)


def _planted(rng, n_per=8, h=16):
    """24 patterns: 8 noisy copies of each of 3 distinct sparse prototypes, shuffled; and their labels."""
    protos = [rng.random((h, h)) * (rng.random((h, h)) < 0.3) for _ in range(3)]
    pats, labels = [], []
    for c, p in enumerate(protos):
        for _ in range(n_per):
            q = np.clip(p + 0.05 * rng.standard_normal(p.shape) * (p > 0), 0, None)
            pats.append(q / q.sum())
            labels.append(c)
    perm = rng.permutation(len(pats))
    return np.array(pats)[perm], np.array(labels)[perm]


# --- characteristic_patterns ----------------------------------------------------------------

def test_patterns_keep_positive_relevance_inside_the_region_and_sum_to_one():
    rel = np.array([[[1.0, -2.0], [3.0, 4.0]],
                    [[0.5, 0.5], [-1.0, 2.0]]])
    reg = np.array([[[True, True], [False, True]],
                    [[False, True], [True, True]]])
    p = characteristic_patterns(rel, reg)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p[0], [[1 / 5, 0], [0, 4 / 5]])
    np.testing.assert_allclose(p[1], [[0, 0.5 / 2.5], [0, 2 / 2.5]])
    np.testing.assert_allclose(p.sum(axis=(1, 2)), 1.0)


def test_patterns_reject_an_empty_pattern_naming_the_map():
    rel = np.ones((3, 2, 2))
    rel[1] = -1.0
    with pytest.raises(InputError, match=r"map\(s\) 1 is all zero"):
        characteristic_patterns(rel, np.ones((3, 2, 2), bool))


def test_patterns_reject_bad_input():
    with pytest.raises(InputError, match="3 dimensions"):
        characteristic_patterns(np.ones((2, 2)), np.ones((2, 2), bool))
    with pytest.raises(InputError, match="must match"):
        characteristic_patterns(np.ones((2, 3, 3)), np.ones((2, 3, 2), bool))
    with pytest.raises(InputError, match="non-finite"):
        characteristic_patterns(np.full((1, 2, 2), np.nan), np.ones((1, 2, 2), bool))
    with pytest.raises(InputError, match="boolean"):
        characteristic_patterns(np.ones((1, 2, 2)), np.full((1, 2, 2), 0.5))


# --- difference_matrix ----------------------------------------------------------------------

def test_difference_matrix_equals_a_double_loop_whatever_the_chunk(rng):
    p = rng.random((7, 5, 6)) * (rng.random((7, 5, 6)) < 0.4)     # sparse, like real patterns
    p[3] = 0.0                                                      # and an empty one
    p[5] = rng.random((5, 6))                                       # and a dense one
    ref = np.array([[np.abs(a - b).sum() for b in p] for a in p])
    d = difference_matrix(p)
    assert d.shape == (7, 7) and d.dtype == np.float64
    np.testing.assert_allclose(d, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    for chunk in (1, 7, 30, 10**6):
        np.testing.assert_allclose(difference_matrix(p, chunk=chunk), ref, rtol=1e-12, atol=1e-14)


def test_difference_matrix_rejects_bad_input():
    with pytest.raises(InputError, match="at least 2"):
        difference_matrix(np.ones((1, 3, 3)))
    with pytest.raises(InputError, match="3 dimensions"):
        difference_matrix(np.ones((4, 9)))
    with pytest.raises(InputError, match="non-finite"):
        difference_matrix(np.array([[[1.0]], [[np.inf]]]))
    with pytest.raises(InputError, match="chunk"):
        difference_matrix(np.ones((2, 3, 3)), chunk=0)


# --- total gradient and the annealing move deltas -------------------------------------------

def test_total_gradient_by_hand():
    d = np.array([[0.0, 1.0, 4.0],
                  [1.0, 0.0, 2.0],
                  [4.0, 2.0, 0.0]])
    # down the rows: |1-0|+|0-1|+|2-4| + |4-1|+|2-0|+|0-2| = 11; along columns the same (symmetric)
    assert total_gradient(d) == 22.0
    assert total_gradient(np.ones((4, 4))) == 0.0


def test_total_gradient_is_a_path_length_over_the_edge_weights(rng):
    """GR_t(D[o][:, o]) == sum W[o_i, o_i+1] for any order, also for a non-symmetric D."""
    for d in (difference_matrix(rng.random((9, 4, 4))), rng.random((9, 9))):
        w = _edge_weights(d)
        np.testing.assert_array_equal(w, w.T)
        for _ in range(5):
            o = rng.permutation(9)
            assert _path_length(w, o) == pytest.approx(total_gradient(d[np.ix_(o, o)]), rel=1e-12)


@pytest.mark.parametrize("symmetric", [True, False])
def test_incremental_move_delta_equals_the_full_recompute(rng, symmetric):
    n = 11
    d = difference_matrix(rng.random((n, 3, 4))) if symmetric else rng.random((n, n))
    w = _edge_weights(d).tolist()
    order = list(rng.permutation(n))
    kinds = set()
    for _ in range(300):
        lo, hi = sorted(rng.choice(n, 2, replace=False).tolist())
        kind = int(rng.integers(2))
        kinds.add((kind, hi - lo == 1, lo == 0, hi == n - 1))
        before = total_gradient(d[np.ix_(order, order)])
        delta = _move_delta(w, order, kind, lo, hi)
        new = order.copy()
        _apply_move(new, kind, lo, hi)
        after = total_gradient(d[np.ix_(new, new)])
        assert delta == pytest.approx(after - before, abs=1e-9 * before)
        order = new
    assert {k[0] for k in kinds} == {_SWAP, _REVERSE}
    assert any(k[1] for k in kinds) and any(k[2] for k in kinds) and any(k[3] for k in kinds)


def test_move_semantics():
    o = [0, 1, 2, 3, 4]
    _apply_move(o, _SWAP, 1, 3)
    assert o == [0, 3, 2, 1, 4]
    _apply_move(o, _REVERSE, 0, 3)
    assert o == [1, 2, 3, 0, 4]


# --- annealing and groups on planted structure ----------------------------------------------

def test_annealing_and_groups_recover_three_planted_groups(rng):
    p, labels = _planted(rng)
    d = difference_matrix(p)
    res = anneal_order(d, rng)
    assert sorted(res.order.tolist()) == list(range(24))
    assert res.total_gradient_start == pytest.approx(total_gradient(d))
    assert res.total_gradient_end == pytest.approx(total_gradient(d[np.ix_(res.order, res.order)]))
    assert res.total_gradient_end < 0.6 * res.total_gradient_start
    assert res.history[0] == pytest.approx(res.total_gradient_start)
    assert res.history_steps[-1] == res.n_steps == 200 * 24
    assert res.total_gradient_end <= res.history.min() * (1 + 1e-9)   # the best seen is kept

    groups = pattern_groups(d, res.order, n_groups=3)
    assert len(groups) == 3
    found = []
    for g in groups:
        members_labels = set(labels[g["members"]].tolist())
        assert len(members_labels) == 1, f"group {g['start']}:{g['stop']} mixes prototypes {members_labels}"
        found.append(members_labels.pop())
        assert g["size"] == 8 == g["stop"] - g["start"]
        np.testing.assert_array_equal(g["members"], res.order[g["start"]:g["stop"]])
        assert g["mean_difference"] < 0.5 * g["mean_difference_all"]
        assert g["relative_difference"] == pytest.approx(g["mean_difference"] / g["mean_difference_all"])
    assert sorted(found) == [0, 1, 2]
    assert groups[0]["contrast"] <= groups[1]["contrast"] <= groups[2]["contrast"]


def test_annealing_is_deterministic_for_a_generator_state():
    p, _ = _planted(np.random.default_rng(7))
    d = difference_matrix(p)
    a = anneal_order(d, np.random.default_rng(3), n_steps=2000)
    b = anneal_order(d, np.random.default_rng(3), n_steps=2000)
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.history, b.history)
    assert a.t_end == pytest.approx(a.t_start / 1000)


def test_annealing_rejects_bad_input(rng):
    d = difference_matrix(rng.random((4, 2, 2)))
    with pytest.raises(InputError, match="square"):
        anneal_order(np.ones((3, 4)), rng)
    with pytest.raises(InputError, match="at least 2"):
        anneal_order(np.zeros((1, 1)), rng)
    with pytest.raises(InputError, match="Generator"):
        anneal_order(d, 42)
    with pytest.raises(InputError, match="n_steps"):
        anneal_order(d, rng, n_steps=-1)
    with pytest.raises(InputError, match="t_end .* above t_start"):
        anneal_order(d, rng, t_start=1.0, t_end=2.0)
    with pytest.raises(InputError, match="t_start"):
        anneal_order(d, rng, t_start=0.0)


def test_groups_from_a_summed_area_table_match_a_direct_mean():
    """A hand-made block matrix in its own order: the two tight blocks are found, means by hand."""
    n = 9
    d = np.full((n, n), 1.0)
    d[0:3, 0:3] = 0.1
    d[5:9, 5:9] = 0.2
    np.fill_diagonal(d, 0.0)
    groups = pattern_groups(d, np.arange(n), n_groups=2, min_size=2)
    assert [(g["start"], g["stop"]) for g in groups] == [(0, 3), (5, 9)]
    assert groups[0]["mean_difference"] == pytest.approx(0.1)
    assert groups[0]["mean_outside_difference"] == pytest.approx(1.0)
    assert groups[1]["mean_difference"] == pytest.approx(0.2)
    off = d[~np.eye(n, dtype=bool)].mean()
    assert mean_pair_difference(d) == pytest.approx(off)
    assert groups[0]["mean_difference_all"] == pytest.approx(off)
    # an order moves the blocks: members are original indices in the new order
    o = np.array([4, 8, 7, 6, 5, 3, 0, 2, 1])
    g1, g2 = pattern_groups(d, o, n_groups=2, min_size=2)
    assert (g1["start"], g1["stop"], g1["members"].tolist()) == (6, 9, [0, 2, 1])
    assert (g2["start"], g2["stop"], g2["members"].tolist()) == (1, 5, [8, 7, 6, 5])
    # the literal lowest-mean criterion picks a pair of the tightest block instead
    m = pattern_groups(d, np.arange(n), n_groups=1, min_size=2, criterion="mean")[0]
    assert m["size"] == 2 and m["mean_difference"] == pytest.approx(0.1)


def test_groups_reject_bad_input():
    d = np.ones((6, 6)) - np.eye(6)
    with pytest.raises(InputError, match="permutation"):
        pattern_groups(d, [0, 1, 2, 3, 4, 4])
    with pytest.raises(InputError, match="min_size must be at least 2"):
        pattern_groups(d, np.arange(6), min_size=1)
    with pytest.raises(InputError, match="no block size fits"):
        pattern_groups(d, np.arange(6), min_size=4, max_size=3)
    with pytest.raises(InputError, match="criterion"):
        pattern_groups(d, np.arange(6), criterion="best")


# --- shared pattern, contour level and fraction ---------------------------------------------

def test_identical_patterns_share_without_weighting(rng):
    r = rng.random((4, 3)) / 6
    patterns = np.stack([r, r, r])
    porosity = rng.random((3, 4, 3))
    sr = shared_pattern(patterns, porosity)
    np.testing.assert_array_equal(sr, (porosity * patterns).sum(axis=0))


def test_disagreeing_pixel_is_weighted_down_by_the_reference_factor():
    patterns = np.zeros((2, 2, 2))
    patterns[:, 0, 0] = [0.3, 0.1]       # disagree: sigma 0.1, sum 0.4
    patterns[:, 0, 1] = [0.2, 0.2]       # agree
    porosity = np.full((2, 2, 2), 0.5)
    porosity[1] = 0.25
    sr = shared_pattern(patterns, porosity)
    assert sr[0, 0] == pytest.approx(math.exp(-60 * 0.1 / 0.4) * (0.5 * 0.3 + 0.25 * 0.1), rel=1e-12)
    assert sr[0, 1] == pytest.approx(0.5 * 0.2 + 0.25 * 0.2, rel=1e-12)
    assert sr[1, 0] == 0.0 and sr[1, 1] == 0.0                 # no relevance anywhere -> 0
    assert shared_pattern(patterns, porosity, sigma_factor=0)[0, 0] == pytest.approx(0.175)


def test_shared_pattern_rejects_bad_input():
    ok = np.ones((2, 3, 3)) / 9
    with pytest.raises(InputError, match="at least 2"):
        shared_pattern(ok[:1], ok[:1])
    with pytest.raises(InputError, match="must match"):
        shared_pattern(ok, np.ones((2, 3, 2)))
    with pytest.raises(InputError, match="porosity outside 0..1"):
        shared_pattern(ok, ok * 90)
    with pytest.raises(InputError, match="negative"):
        shared_pattern(-ok, ok)
    with pytest.raises(InputError, match="non-finite"):
        shared_pattern(ok, np.full((2, 3, 3), np.nan))


def test_default_level_scales_the_reference_level_with_area():
    assert default_level((384, 384)) == pytest.approx(3e-6)
    assert default_level((192, 192)) == pytest.approx(1.2e-5)
    assert default_level((384, 192)) == pytest.approx(6e-6)
    for bad in ((0, 5), (5,), (2.5, 4), "ab"):
        with pytest.raises(InputError, match="two positive integers"):
            default_level(bad)


def test_shared_fraction_counts_the_pixels_above_the_level():
    sr = np.arange(16, dtype=float).reshape(4, 4) * 1e-6
    assert shared_fraction(sr, 3e-6) == pytest.approx(12 / 16)    # 4e-6 .. 15e-6; 3e-6 is not above
    assert shared_fraction(sr, 1.0) == 0.0
    with pytest.raises(InputError, match="2-D"):
        shared_fraction(np.ones(5), 0.1)
    with pytest.raises(InputError, match="level"):
        shared_fraction(sr, float("nan"))
