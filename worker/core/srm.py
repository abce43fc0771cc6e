"""The sample-ratio-mismatch test (issue 17): Pearson's chi-square goodness of fit of the users
per variant against the allocation, and its p-value.

The p-value is the chi-square survival function with k - 1 degrees of freedom, which is the
regularized upper incomplete gamma function Q(dof / 2, x / 2). It is computed here in closed
form (a series below a + 1, Lentz's continued fraction above, as in Numerical Recipes §6.2):
about thirty lines, where scipy would add a large dependency for one function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The p-value below which a split is called a mismatch, as Kohavi et al. and Fabijan et al. advise
# for a check that runs on every experiment; deploy/prometheus/alerts.yml alerts on the same.
SRM_ALERT_P_VALUE = 0.001
MAX_TERMS = 500
EPSILON = 1e-15
TINY = 1e-300  # keeps Lentz's method away from a division by zero


@dataclass(frozen=True, slots=True)
class SrmTest:
    """One chi-square goodness-of-fit test of observed counts against allocation weights."""

    chi_square: float
    degrees_of_freedom: int
    p_value: float
    users: int


def srm_test(observed: Sequence[int], weights: Sequence[float]) -> SrmTest | None:
    """The test of `observed` users per variant against `weights` (any positive scale: 50/50,
    1/1 and 0.5/0.5 are the same allocation); None when there is nobody to test."""
    if len(observed) != len(weights) or len(weights) < 2 or min(weights) <= 0:
        raise ValueError("srm_test needs one positive weight per observed count, and two or more of them")
    users = sum(observed)
    if users == 0:
        return None
    total_weight = sum(weights)
    chi_square = 0.0
    for count, weight in zip(observed, weights, strict=True):
        expected = users * weight / total_weight
        chi_square += (count - expected) ** 2 / expected
    dof = len(weights) - 1
    return SrmTest(chi_square, dof, chi_square_survival(chi_square, dof), users)


def chi_square_p_value(observed: Sequence[int], expected_weights: Sequence[float]) -> float | None:
    """The SRM p-value alone: the probability of a split at least this far from the allocation."""
    test = srm_test(observed, expected_weights)
    return None if test is None else test.p_value


def chi_square_survival(x: float, dof: int) -> float:
    """P(X >= x) for X chi-square distributed with `dof` degrees of freedom."""
    return regularized_gamma_q(dof / 2.0, x / 2.0)


def chi_square_critical(p_value: float, dof: int) -> float:
    """The x whose survival is `p_value`: a chi-square above it has a smaller p-value. Bisection,
    since the survival function falls monotonically from 1 at 0."""
    if not 0.0 < p_value < 1.0:
        raise ValueError("p_value must lie strictly between 0 and 1")
    low, high = 0.0, max(1.0, float(dof))
    while chi_square_survival(high, dof) > p_value:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if chi_square_survival(middle, dof) > p_value:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def regularized_gamma_q(a: float, x: float) -> float:
    """Q(a, x) = Γ(a, x) / Γ(a), for a > 0 and x >= 0."""
    if a <= 0:
        raise ValueError("a must be positive")
    if x <= 0:
        return 1.0
    if x < a + 1:  # the series converges fast here; the continued fraction above
        return max(0.0, 1.0 - _lower_series(a, x))
    return _upper_continued_fraction(a, x)


def _prefactor(a: float, x: float) -> float:
    """x^a e^-x / Γ(a), in logarithms: each factor alone overflows for large counts."""
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _lower_series(a: float, x: float) -> float:
    """P(a, x) by its power series."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(MAX_TERMS):
        denominator += 1
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * EPSILON:
            break
    return total * _prefactor(a, x)


def _upper_continued_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction, evaluated with the modified Lentz method."""
    b = x + 1.0 - a
    c = 1.0 / TINY
    d = 1.0 / b
    fraction = d
    for i in range(1, MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = TINY if abs(d) < TINY else d
        c = b + an / c
        c = TINY if abs(c) < TINY else c
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < EPSILON:
            break
    return fraction * _prefactor(a, x)
