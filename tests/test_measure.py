"""Measures on binary walks: the worked examples of docs/method.md, 'Worked examples' and the properties in
'The folding measure'.

Every library value is compared with a small reference written here with Python
ints and fractions (it never calls the library).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import spacefold as sf
from spacefold._core import measure

# --------------------------------------------------------------------------------------
# Reference implementation (Python ints and Fractions)
# --------------------------------------------------------------------------------------


def d_h(a, b) -> int:
    return sum(x != y for x, y in zip(a, b))


def ref_ranges(walk) -> tuple[int, int]:
    r1 = max(d_h(walk[0], p) for p in walk)
    r2 = sum(d_h(walk[i], walk[i + 1]) for i in range(len(walk) - 1))
    return r1, r2


def ref_chi(walk) -> Fraction:
    r1, r2 = ref_ranges(walk)
    return Fraction(0) if r2 == 0 else 1 - Fraction(r1, r2)


def ref_profile(walk) -> list[Fraction]:
    return [ref_chi(walk[: j + 1]) for j in range(len(walk))]


def ref_interaction(walk, k: int) -> Fraction:
    """Signed χ(Γ1 ⊕ Γ2) − χ(Γ1) − χ(Γ2) with the shared point at 0-based index k."""
    return ref_chi(walk) - ref_chi(walk[: k + 1]) - ref_chi(walk[k:])


def ref_refine_ok(original, refined) -> bool:
    """Every step one bit, same ends, and the original patterns appear in order."""
    if any(d_h(refined[i], refined[i + 1]) != 1 for i in range(len(refined) - 1)):
        return False
    pos = 0
    for p in original:
        while pos < len(refined) and tuple(refined[pos]) != tuple(p):
            pos += 1
        if pos == len(refined):
            return False
    return tuple(refined[0]) == tuple(original[0]) and tuple(refined[-1]) == tuple(original[-1])


def bits(*words: str) -> torch.Tensor:
    """Walk from bit strings: bits("00", "10") -> bool (2, 2)."""
    return torch.tensor([[c == "1" for c in w] for w in words], dtype=torch.bool)


def as_lists(walk: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in row) for row in walk.tolist()]


def close(value: float, exact: Fraction) -> bool:
    return abs(value - float(exact)) < 1e-12


# --------------------------------------------------------------------------------------
# Worked examples (docs/method.md, 'Worked examples')
# --------------------------------------------------------------------------------------

EXAMPLES = [
    # walk, r1, r2, chi
    (("0000", "1100", "0011"), 2, 6, Fraction(2, 3)),
    (("0011", "1100", "0000"), 4, 6, Fraction(1, 3)),
    (("000", "100", "110", "111"), 3, 3, Fraction(0)),
    (("00", "10", "00"), 1, 2, Fraction(1, 2)),
    (("00", "00", "10", "10", "00"), 1, 2, Fraction(1, 2)),
    (("0000", "1000", "0000", "0111"), 3, 5, Fraction(2, 5)),
    (("0101",), 0, 0, Fraction(0)),
    (("0101", "0101", "0101"), 0, 0, Fraction(0)),
]


@pytest.mark.parametrize("words, r1, r2, chi", EXAMPLES)
def test_worked_examples(words, r1, r2, chi):
    w = bits(*words)
    assert sf.ranges(w) == (r1, r2)
    value = sf.chi(w)
    assert isinstance(value, float)
    assert Fraction(value).limit_denominator(1000) == chi
    assert close(value, chi)
    # profile ends in chi, and the batched version of the one walk agrees
    assert close(float(sf.chi_profile(w)[-1]), chi)
    r1b, r2b = sf.ranges(w.unsqueeze(0))
    assert r1b.tolist() == [r1] and r2b.tolist() == [r2]
    assert close(float(sf.chi(w.unsqueeze(0))[0]), chi)


def test_asymmetry_example_and_tight_bounds():
    fwd = bits("0000", "1100", "0011")
    rev = measure.reverse(fwd)
    assert torch.equal(rev, bits("0011", "1100", "0000"))
    assert close(sf.chi(fwd), Fraction(2, 3)) and close(sf.chi(rev), Fraction(1, 3))
    lower, upper, reversal = sf.chi_bounds(fwd)
    # D = 2, L = 6: ½(1 − 1/3) = 1/3, 1 − 1/3 = 2/3, D/L = 1/3 (all tight)
    assert close(lower, Fraction(1, 3)) and close(upper, Fraction(2, 3)) and close(reversal, Fraction(1, 3))
    assert close(sf.chi(fwd), Fraction(2, 3))  # = upper
    assert close(sf.chi(rev), Fraction(1, 3))  # = lower of the reversal (L and D are reversal-invariant)
    assert sf.chi_bounds(rev) == sf.chi_bounds(fwd)
    assert close(abs(sf.chi(fwd) - sf.chi(rev)), Fraction(1, 3))  # = D/L
    assert close(sf.symmetric_chi(fwd), Fraction(1, 2))
    assert close(sf.symmetric_chi(rev), Fraction(1, 2))


def test_flat_walk_reversal_is_flat():
    w = bits("000", "100", "110", "111")
    assert sf.chi(w) == 0.0
    assert sf.chi(measure.reverse(w)) == 0.0
    assert sf.ranges(measure.reverse(w)) == (3, 3)


def test_closed_walk_and_stability_rows():
    closed = bits("00", "10", "00")
    repeated = bits("00", "00", "10", "10", "00")
    assert sf.chi(closed) >= 0.5
    assert sf.chi(closed) == sf.chi(repeated) == 0.5
    assert sf.ranges(closed) == sf.ranges(repeated)
    merged, keep = measure.merge_repeats(repeated)
    assert torch.equal(merged, closed)
    assert keep.tolist() == [True, False, True, False, True]


def test_profile_example():
    w = bits("0000", "1000", "0000", "0111")
    prof = sf.chi_profile(w)
    assert prof.shape == (4,)
    # entry 0 is the single pattern (0); entries 1.. are the profile 0, 1/2, 2/5 of docs/method.md, 'Worked examples'
    expected = [Fraction(0), Fraction(0), Fraction(1, 2), Fraction(2, 5)]
    assert all(close(float(p), e) for p, e in zip(prof, expected))
    assert close(measure.max_profile(w), Fraction(1, 2))
    assert close(sf.chi(w), Fraction(2, 5))
    assert measure.distance_to_start(w).tolist() == [0, 1, 0, 3]
    assert measure.step_distances(w).tolist() == [1, 1, 3]


def test_constant_walk():
    w = torch.zeros(5, 3, dtype=torch.bool)
    assert sf.ranges(w) == (0, 0)
    assert sf.chi(w) == 0.0
    assert torch.equal(sf.chi_profile(w), torch.zeros(5, dtype=torch.float64))
    assert measure.max_profile(w) == 0.0
    assert sf.chi_bounds(w) == (0.0, 0.0, 0.0)
    assert sf.interaction(w, 2) == 0.0


def test_non_additivity_super_additive():
    whole = bits("00", "10", "00")
    assert sf.chi(whole[:2]) == 0.0 and sf.chi(whole[1:]) == 0.0
    assert close(sf.chi(whole), Fraction(1, 2))
    assert close(sf.interaction(whole, 1), Fraction(1, 2))
    signed = sf.interaction(whole, 1, signed=True)
    assert close(signed, Fraction(1, 2)) and signed > 0  # super-additive


def test_non_additivity_sub_additive():
    whole = bits("00", "10", "00", "10", "00")
    assert close(sf.chi(whole[:3]), Fraction(1, 2)) and close(sf.chi(whole[2:]), Fraction(1, 2))
    assert sf.ranges(whole) == (1, 4)
    assert close(sf.chi(whole), Fraction(3, 4))
    assert close(sf.interaction(whole, 2), Fraction(1, 4))
    signed = sf.interaction(whole, 2, signed=True)
    assert close(signed, Fraction(-1, 4)) and signed < 0  # sub-additive


def test_interactions_every_split_and_batched_k():
    whole = bits("00", "10", "00", "10", "00")
    every = measure.interactions(whole)
    assert every.shape == (5,)
    for k in range(5):
        assert close(float(every[k]), abs(ref_interaction(as_lists(whole), k)))
    batch = torch.stack([whole, whole.flip(0)])
    ks = torch.tensor([2, 1])
    got = sf.interaction(batch, ks, signed=True)
    assert close(float(got[0]), ref_interaction(as_lists(whole), 2))
    assert close(float(got[1]), ref_interaction(as_lists(whole.flip(0)), 1))


def test_batched_examples_agree_with_single():
    four = [bits(*w) for w, *_ in EXAMPLES if len(w[0]) == 4]
    batch = measure.pad_walks(four)
    assert batch.shape == (len(four), max(len(w) for w in four), 4)
    r1, r2 = sf.ranges(batch)
    chis = sf.chi(batch)
    maxp = measure.max_profile(batch)
    sym = sf.symmetric_chi(batch)
    lower, upper, rev = sf.chi_bounds(batch)
    inter = sf.interaction(batch, 1)
    for i, w in enumerate(four):
        assert (int(r1[i]), int(r2[i])) == sf.ranges(w)
        assert float(chis[i]) == sf.chi(w)
        assert float(maxp[i]) == measure.max_profile(w)
        assert float(sym[i]) == sf.symmetric_chi(w)
        assert (float(lower[i]), float(upper[i]), float(rev[i])) == sf.chi_bounds(w)
        if len(w) > 1:
            assert float(inter[i]) == sf.interaction(w, 1)


def test_refine_example_keeps_r1():
    w = bits("0000", "1100", "0011")
    refined = measure.refine(w)
    assert sf.ranges(refined) == sf.ranges(w) == (2, 6)
    assert measure.distance_to_start(refined).tolist() == [0, 1, 2, 1, 0, 1, 2]
    assert ref_refine_ok(as_lists(w), as_lists(refined))


def test_walk_accepts_integer_and_float_zero_one():
    w = bits("0000", "1100", "0011")
    assert sf.chi(w.to(torch.int64)) == sf.chi(w) == sf.chi(w.to(torch.float32))


# --------------------------------------------------------------------------------------
# Properties (docs/method.md, 'The folding measure') over random binary walks
# --------------------------------------------------------------------------------------


@st.composite
def walks(draw, min_points=1, max_points=10, max_neurons=6, n_neurons=None):
    m = n_neurons if n_neurons is not None else draw(st.integers(1, max_neurons))
    n = draw(st.integers(min_points, max_points))
    rows = draw(st.lists(st.lists(st.integers(0, 1), min_size=m, max_size=m), min_size=n, max_size=n))
    return [tuple(r) for r in rows]


def tensor(walk) -> torch.Tensor:
    return torch.tensor(walk, dtype=torch.bool)


PROPERTY = settings(max_examples=60, deadline=None)


@PROPERTY
@given(walks())
def test_measures_match_reference(walk):
    w = tensor(walk)
    r1, r2 = ref_ranges(walk)
    assert sf.ranges(w) == (r1, r2)
    assert close(sf.chi(w), ref_chi(walk))
    prof = ref_profile(walk)
    got = sf.chi_profile(w)
    assert got.shape == (len(walk),)
    assert all(close(float(g), p) for g, p in zip(got, prof))
    assert close(measure.max_profile(w), max(prof))
    assert measure.distance_to_start(w).tolist() == [d_h(walk[0], p) for p in walk]
    assert measure.step_distances(w).tolist() == [d_h(walk[i], walk[i + 1]) for i in range(len(walk) - 1)]


@PROPERTY
@given(st.integers(1, 5).flatmap(lambda m: st.lists(walks(n_neurons=m, max_points=8), min_size=1, max_size=5)))
def test_batched_and_ragged_agree_with_single(batch):
    ts = [tensor(w) for w in batch]
    padded = measure.pad_walks(ts)
    assert padded.shape == (len(ts), max(len(w) for w in batch), len(batch[0][0]))
    r1, r2 = sf.ranges(padded)
    chis, maxp = sf.chi(padded), measure.max_profile(padded)
    sym = sf.symmetric_chi(padded)
    lower, upper, rev = sf.chi_bounds(padded)
    for i, w in enumerate(batch):
        rr1, rr2 = ref_ranges(w)
        assert (int(r1[i]), int(r2[i])) == (rr1, rr2)
        assert close(float(chis[i]), ref_chi(w))
        assert close(float(maxp[i]), max(ref_profile(w)))
        assert float(sym[i]) == sf.symmetric_chi(ts[i])
        assert (float(lower[i]), float(upper[i]), float(rev[i])) == sf.chi_bounds(ts[i])
    offsets = torch.tensor([0] + [len(w) for w in batch]).cumsum(0)
    rag = measure.ragged_ranges(torch.cat(ts), offsets)
    assert torch.equal(rag["r1"], r1) and torch.equal(rag["r2"], r2)
    assert torch.allclose(rag["chi"], chis, rtol=0, atol=1e-12)
    assert torch.allclose(rag["max_profile"], maxp, rtol=0, atol=1e-12)
    assert rag["n_points"].tolist() == [len(w) for w in batch]


@PROPERTY
@given(walks(), st.data())
def test_stability_under_repeats(walk, data):
    # insert repeated patterns at random places
    out = []
    for p in walk:
        out.extend([p] * data.draw(st.integers(1, 3)))
    w, wr = tensor(walk), tensor(out)
    assert sf.ranges(wr) == sf.ranges(w)
    assert sf.chi(wr) == sf.chi(w)
    assert float(sf.chi_profile(wr)[-1]) == float(sf.chi_profile(w)[-1])
    assert measure.max_profile(wr) == measure.max_profile(w)
    assert torch.equal(measure.merge_repeats(wr)[0], measure.merge_repeats(w)[0])


@PROPERTY
@given(walks())
def test_flatness_invariance(walk):
    w = tensor(walk)
    r1, r2 = ref_ranges(walk)
    D, L = d_h(walk[0], walk[-1]), r2
    flat = sf.chi(w) == 0.0
    assert flat == (sf.chi(measure.reverse(w)) == 0.0)
    assert flat == (r1 == r2)
    assert flat == (D == L)


@PROPERTY
@given(walks(min_points=2))
def test_deterministic_bounds(walk):
    w = tensor(walk)
    _, L = ref_ranges(walk)
    assume(L > 0)
    D = d_h(walk[0], walk[-1])
    c, c_rev = ref_chi(walk), ref_chi(walk[::-1])
    # exact check of the bounds on the reference values
    assert Fraction(1, 2) * (1 - Fraction(D, L)) <= c <= 1 - Fraction(D, L)
    assert abs(c - c_rev) <= Fraction(D, L)
    # and the library's bounds are these numbers, and hold for the library's χ
    lower, upper, rev = sf.chi_bounds(w)
    assert close(lower, Fraction(1, 2) * (1 - Fraction(D, L)))
    assert close(upper, 1 - Fraction(D, L))
    assert close(rev, Fraction(D, L))
    eps = 1e-12
    assert lower - eps <= sf.chi(w) <= upper + eps
    assert abs(sf.chi(w) - sf.chi(measure.reverse(w))) <= rev + eps


@PROPERTY
@given(walks())
def test_chi_range_and_symmetric(walk):
    w = tensor(walk)
    c = sf.chi(w)
    assert 0.0 <= c < 1.0
    prof = sf.chi_profile(w)
    assert bool(((prof >= 0) & (prof < 1)).all())
    assert close(sf.symmetric_chi(w), (ref_chi(walk) + ref_chi(walk[::-1])) / 2)
    assert sf.symmetric_chi(w) == sf.symmetric_chi(measure.reverse(w))


@PROPERTY
@given(walks())
def test_refinement(walk):
    w = tensor(walk)
    refined = measure.refine(w)
    assert refined.dtype == torch.bool and refined.shape[1] == w.shape[1]
    assert sf.ranges(refined) == ref_ranges(walk)
    assert ref_refine_ok(walk, as_lists(refined))
    assert len(refined) == 1 + ref_ranges(walk)[1]


@PROPERTY
@given(walks(min_points=1))
def test_interaction_bounds_and_reference(walk):
    w = tensor(walk)
    n = len(walk)
    every = measure.interactions(w)
    signed = measure.interactions(w, signed=True)
    assert every.shape == (n,)
    assert float(every[0]) == 0.0 and float(every[-1]) == 0.0
    assert bool(((every >= 0) & (every <= 2)).all())
    for k in range(n):
        exact = ref_interaction(walk, k)
        assert close(float(signed[k]), exact)
        assert close(sf.interaction(w, k), abs(exact))


@PROPERTY
@given(walks(min_points=2))
def test_closed_walks_fold_at_least_half(walk):
    closed = walk + [walk[0]]
    assume(ref_ranges(closed)[1] > 0)
    assert sf.chi(tensor(closed)) >= 0.5
    assert ref_chi(closed) >= Fraction(1, 2)


@PROPERTY
@given(walks(min_points=2, max_points=6))
def test_looped_walk_tends_to_one(walk):
    loop = walk + [walk[0]]
    r1, L = ref_ranges(loop)
    assume(L > 0)
    previous = -1.0
    for times in (1, 2, 4, 8, 64):
        repeated = loop + loop[1:] * (times - 1)
        assert ref_ranges(repeated) == (r1, times * L)
        c = sf.chi(tensor(repeated))
        assert close(c, 1 - Fraction(r1, times * L))
        assert c > previous
        previous = c
    assert 1 - previous <= r1 / (64 * L) + 1e-12
