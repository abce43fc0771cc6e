"""The SRM statistics (worker/core/srm.py) against published sample-ratio-mismatch examples, both
ways, and against values that can be checked independently: closed forms of the chi-square
survival function and the published table of critical values."""

from __future__ import annotations

import itertools
import math

import pytest

from worker.core.srm import (
    SRM_ALERT_P_VALUE,
    chi_square_critical,
    chi_square_p_value,
    chi_square_survival,
    regularized_gamma_q,
    srm_test,
)

# (observed users per variant, allocation, published p-value, relative tolerance, source)
PUBLISHED_MISMATCHES = [
    # Kohavi, Tang, Xu, "Trustworthy Online Controlled Experiments" (2020), ch. 3: a 50/50 design
    # with 821,588 users in control and 815,482 in treatment, ratio 0.993, p-value 1.8e-6.
    ((821_588, 815_482), (50, 50), 1.8e-6, 0.02),
    # Wikipedia, "Sample ratio mismatch": 600 and 400 of 1,000 users on a 50/50 split, p = 2.54e-10.
    ((600, 400), (50, 50), 2.54e-10, 0.002),
    # srm.osc.garden (an online SRM checker): 44,000 and 45,000 users on 50/50, p = 0.0008.
    ((44_000, 45_000), (1, 1), 0.0008, 0.01),
]


@pytest.mark.parametrize(("observed", "allocation", "published", "tolerance"),
                         [case[:4] for case in PUBLISHED_MISMATCHES])
def test_published_mismatches_are_mismatches(
    observed: tuple[int, ...], allocation: tuple[float, ...], published: float, tolerance: float
) -> None:
    p_value = chi_square_p_value(observed, allocation)
    assert p_value == pytest.approx(published, rel=tolerance)
    assert p_value < SRM_ALERT_P_VALUE


def test_published_splits_that_are_not_mismatches() -> None:
    # srm.osc.garden: "a perfectly even distribution gets a p-value of 1".
    assert chi_square_p_value([44_500, 44_500], [1, 1]) == 1.0
    # The CXL guide's example (community.cxl.com/t/1072), chisq.test(c(10000, 10050), p = c(0.5, 0.5)),
    # for which R prints X-squared = 0.12469, df = 1, p-value = 0.724.
    test = srm_test([10_000, 10_050], [0.5, 0.5])
    assert test is not None
    assert (test.chi_square, test.degrees_of_freedom) == (pytest.approx(0.12469, abs=1e-5), 1)
    assert test.p_value == pytest.approx(0.724, abs=5e-4)
    assert test.p_value > SRM_ALERT_P_VALUE


def test_an_unequal_allocation_is_tested_against_its_own_weights() -> None:
    # 80/20 is what 8,000 and 2,000 should look like; judged against 50/50 it is a gross mismatch.
    assert chi_square_p_value([8_000, 2_000], [80, 20]) == 1.0
    assert chi_square_p_value([8_000, 2_000], [0.8, 0.2]) == 1.0
    assert chi_square_p_value([8_000, 2_000], [50, 50]) == 0.0  # far below the smallest float
    # 1,000 users of a 50/50 experiment split 70/30 (the integration test's skewed stream).
    assert chi_square_p_value([700, 300], [1, 1]) == pytest.approx(math.erfc(math.sqrt(160 / 2)), rel=1e-9)


@pytest.mark.parametrize("x", [1e-6, 0.01, 0.5, 1.0, 2.7, 3.84, 10.83, 40.0, 120.0, 600.0])
def test_one_degree_of_freedom_matches_the_closed_form(x: float) -> None:
    assert chi_square_survival(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("dof", [2, 4, 6, 10, 30])
@pytest.mark.parametrize("x", [0.05, 1.0, 5.0, 13.8, 50.0, 300.0])
def test_even_degrees_of_freedom_match_the_closed_form(dof: int, x: float) -> None:
    # For even k: Q(k/2, x/2) = exp(-x/2) * sum_{i < k/2} (x/2)^i / i!  (for k = 2 simply exp(-x/2)).
    half = x / 2
    closed = math.exp(-half) * sum(half**i / math.factorial(i) for i in range(dof // 2))
    assert chi_square_survival(x, dof) == pytest.approx(closed, rel=1e-9, abs=1e-300)


# Critical values of the chi-square distribution at p = 0.001 (NIST/SEMATECH e-Handbook of
# Statistical Methods, table 1.3.6.7.4, upper tail 0.999 quantiles).
CRITICAL_AT_0_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 10: 29.588, 20: 45.315}


@pytest.mark.parametrize(("dof", "critical"), CRITICAL_AT_0_001.items())
def test_the_published_critical_values(dof: int, critical: float) -> None:
    assert chi_square_critical(0.001, dof) == pytest.approx(critical, abs=5e-4)
    assert chi_square_survival(critical, dof) == pytest.approx(0.001, rel=2e-3)


def test_three_variants_balanced_and_skewed() -> None:
    balanced = srm_test([3_333, 3_334, 3_333], [1, 1, 1])
    skewed = srm_test([3_500, 3_300, 3_200], [1, 1, 1])
    assert balanced is not None and skewed is not None
    assert balanced.degrees_of_freedom == 2 and balanced.p_value > 0.99
    assert skewed.chi_square == pytest.approx(14.0, abs=1e-9)  # (167² + 33² + 133²) / 3333.3…
    assert skewed.p_value == pytest.approx(math.exp(-14.0 / 2), rel=1e-9) and skewed.p_value < SRM_ALERT_P_VALUE


def test_nobody_to_test_and_bad_arguments() -> None:
    assert srm_test([0, 0], [1, 1]) is None and chi_square_p_value([0, 0], [1, 1]) is None
    for observed, weights in (([1, 2], [1]), ([1], [1]), ([1, 2], [1, 0]), ([1, 2], [1, -1])):
        with pytest.raises(ValueError):
            srm_test(observed, weights)
    for p_value in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError):
            chi_square_critical(p_value, 1)
    with pytest.raises(ValueError):
        regularized_gamma_q(0.0, 1.0)


def test_the_survival_function_is_monotone_and_bounded() -> None:
    for dof in (1, 2, 3, 7, 50):
        values = [chi_square_survival(x / 4, dof) for x in range(0, 2_000)]
        assert values[0] == 1.0
        assert all(0.0 <= later <= earlier <= 1.0 for earlier, later in itertools.pairwise(values))
