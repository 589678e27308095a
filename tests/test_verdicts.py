"""The seed-paired verdicts (lskd_report.verdicts) against scipy's t tests computed here, and on generated grids:
a large seed effect shared by a seed's cells plus small cell effects (pairing must find them, the unpaired
interval cannot), and grids without cell effects (the false "holds" rate must stay within the level)."""

import math
import random
import statistics

import pytest
import scipy.stats

from lskd_report.verdicts import (
    FAILS,
    HOLDS,
    NEEDS_SEEDS,
    PAIRED,
    UNDECIDED,
    WELCH,
    check_grid,
    detectable,
    estimate,
    mean_interval,
    paired_spread,
)

ALPHAS = ["0.0", "0.1"]
TEMPERATURES = ["1", "2", "3"]
SMALL_EFFECTS = {  # every claim holds by 1 to 3 points
    ("0.0", "1"): 97.0,
    ("0.0", "2"): 96.5,
    ("0.0", "3"): 96.0,
    ("0.1", "1"): 98.0,
    ("0.1", "2"): 96.0,
    ("0.1", "3"): 94.0,
}
NO_EFFECT = {cell: 90.0 for cell in SMALL_EFFECTS}


def grid(rng: random.Random, means: dict, seeds: int, seed_sd: float, noise_sd: float, pair: bool = True) -> dict:
    """(α, T) -> {seed: score}: each seed's luck (``seed_sd``) shared by all its cells, plus each run's own noise.
    Without ``pair``, an unpaired design: every cell's runs have seeds (and luck) of their own."""
    luck = [rng.gauss(0.0, seed_sd) for _ in range(seeds)]
    cells = {}
    for index, (cell, mean) in enumerate(means.items()):
        if not pair:
            luck = [rng.gauss(0.0, seed_sd) for _ in range(seeds)]
        offset = 0 if pair else 100 * (index + 1)
        cells[cell] = {offset + s: mean + luck[s] + rng.gauss(0.0, noise_sd) for s in range(seeds)}
    return cells


def verdicts(cells: dict, level: float = 0.95) -> list[str]:
    return [v.verdict for v in check_grid(cells, ALPHAS, TEMPERATURES, level)]


@pytest.mark.parametrize("n, level", [(2, 0.95), (3, 0.95), (5, 0.9), (8, 0.99)])
def test_paired_interval_is_scipys_ttest_rel(n, level):
    rng = random.Random(n)
    a = [rng.gauss(50.0, 4.0) for _ in range(n)]
    b = [x + rng.gauss(1.0, 1.0) for x in a]
    interval = estimate([(1, dict(enumerate(b))), (-1, dict(enumerate(a)))], level)
    reference = scipy.stats.ttest_rel(b, a)
    ci = reference.confidence_interval(level)
    assert interval.method == PAIRED and interval.n == n and interval.dof == reference.df == n - 1
    assert interval.mean / interval.standard_error == pytest.approx(reference.statistic)
    assert (interval.low, interval.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    differences = [y - x for x, y in zip(a, b)]
    half = scipy.stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    assert interval.half_width == pytest.approx(half)
    assert list(interval.per_seed.values()) == pytest.approx(differences)


def test_an_interaction_contrast_is_paired_over_its_four_cells():
    """Claim 4's [LS(1) − LS(T)] − [base(1) − base(T)]: the one-sample t interval of the per-seed contrasts."""
    rng = random.Random(4)
    cells = [{s: rng.gauss(90.0, 3.0) for s in range(4)} for _ in range(4)]
    coefficients = (1, -1, -1, 1)
    interval = estimate(list(zip(coefficients, cells)), 0.95)
    contrasts = [sum(c * cell[s] for c, cell in zip(coefficients, cells)) for s in range(4)]
    ci = scipy.stats.ttest_1samp(contrasts, 0.0).confidence_interval(0.95)
    assert interval.method == PAIRED
    assert (interval.low, interval.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


@pytest.mark.parametrize("sizes", [(2, 2), (3, 5), (6, 3)])
def test_welch_interval_is_scipys_ttest_ind_unequal_variances(sizes):
    rng = random.Random(sum(sizes))
    a = [rng.gauss(70.0, 1.0) for _ in range(sizes[0])]
    b = [rng.gauss(72.0, 4.0) for _ in range(sizes[1])]
    interval = estimate([(1, {10 + i: v for i, v in enumerate(b)}), (-1, dict(enumerate(a)))], 0.95)
    reference = scipy.stats.ttest_ind(b, a, equal_var=False)
    assert interval.method == WELCH and interval.per_seed == {} and interval.seeds_per_cell == sizes[::-1]
    assert interval.dof == pytest.approx(reference.df)
    assert interval.mean / interval.standard_error == pytest.approx(reference.statistic)
    ci = reference.confidence_interval(0.95)
    assert (interval.low, interval.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_welch_over_four_cells_uses_the_satterthwaite_degrees_of_freedom():
    rng = random.Random(7)
    cells = [[rng.gauss(80.0, sd) for _ in range(n)] for sd, n in ((1.0, 3), (2.0, 4), (0.5, 2), (3.0, 5))]
    coefficients = (1, -1, -1, 1)
    terms = [(c, {100 * i + s: v for s, v in enumerate(cell)}) for i, (c, cell) in enumerate(zip(coefficients, cells))]
    interval = estimate(terms, 0.9)
    parts = [statistics.variance(cell) / len(cell) for cell in cells]
    dof = sum(parts) ** 2 / sum(p * p / (len(cell) - 1) for p, cell in zip(parts, cells))
    mean = sum(c * statistics.fmean(cell) for c, cell in zip(coefficients, cells))
    half = scipy.stats.t.ppf(0.95, dof) * math.sqrt(sum(parts))
    assert interval.method == WELCH and interval.dof == pytest.approx(dof)
    assert (interval.low, interval.high) == (pytest.approx(mean - half), pytest.approx(mean + half))


def test_a_cell_mean_interval_is_scipys_t_interval():
    values = {1: 91.0, 2: 93.5, 3: 90.25, 4: 92.0}
    interval = mean_interval(values, 0.95)
    low, high = scipy.stats.t.interval(
        0.95, 3, loc=statistics.mean(values.values()), scale=scipy.stats.sem(list(values.values()))
    )
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    assert mean_interval({1: 91.0}, 0.95) is None


def test_seeds_shared_by_only_some_runs_pair_over_the_shared_ones():
    interval = estimate([(1, {1: 5.0, 2: 7.0, 3: 6.0}), (-1, {2: 4.0, 3: 4.5, 4: 1.0})], 0.95)
    assert interval.method == PAIRED and interval.per_seed == {2: 3.0, 3: 1.5} and interval.n == 2


def test_one_seed_gives_no_interval_and_no_verdict():
    cells = {cell: {1: mean} for cell, mean in SMALL_EFFECTS.items()}
    checked = check_grid(cells, ALPHAS, TEMPERATURES)
    assert [v.verdict for v in checked] == [NEEDS_SEEDS] * 5
    (comparison,) = checked[1].comparisons
    assert comparison.difference == pytest.approx(1.0) and comparison.interval.half_width is None
    assert "+1.000 (needs ≥ 2 seeds" in comparison.text()


def test_pairing_finds_small_cell_effects_that_the_unpaired_interval_cannot():
    """Seed luck of sd 5 points, run noise of sd 0.3, cell effects of 1-3 points, 5 seeds; the same scores with
    seeds that do not pair."""
    rng = random.Random(2024)
    paired = grid(rng, SMALL_EFFECTS, 5, 5.0, 0.3)
    unpaired = {cell: {100 * i + s: v for s, v in values.items()} for i, (cell, values) in enumerate(paired.items())}
    assert verdicts(paired) == [HOLDS] * 5
    assert verdicts(unpaired) == [UNDECIDED] * 5

    def detectable(cells):
        return [c.interval.half_width for v in check_grid(cells, ALPHAS, TEMPERATURES) for c in v.comparisons]

    assert max(detectable(paired)) < 1.5 < 5.0 < min(detectable(unpaired))


def test_the_paired_verdicts_turn_against_reversed_effects():
    rng = random.Random(5)
    reversed_means = {cell: 2 * 96.0 - mean for cell, mean in SMALL_EFFECTS.items()}
    assert verdicts(grid(rng, reversed_means, 5, 5.0, 0.3)) == [FAILS] * 5


@pytest.mark.parametrize("pair, trials", [(True, 2000), (False, 1000)])
def test_without_cell_effects_false_holds_stay_within_the_level(pair, trials):
    """Grids of 3 seeds with seed luck (sd 5) and no cell effect: a claim 'holds' in at most 5 % of them (the
    level's error rate; one difference's interval lies above 0 in 2.5 %). Paired, claim 2's single difference
    is decided either way in 5 % ± 3 standard errors (the paired t test is exact); Welch's, in at most that."""
    rng = random.Random(29 + pair)
    holds = [0] * 5
    decided = 0
    for _ in range(trials):
        outcome = verdicts(grid(rng, NO_EFFECT, 3, 5.0, 1.0, pair))
        holds = [h + (v == HOLDS) for h, v in zip(holds, outcome)]
        decided += outcome[1] != UNDECIDED
    assert max(holds) / trials <= 0.05, holds
    error = math.sqrt(0.05 * 0.95 / trials)
    assert decided / trials <= 0.05 + 3 * error, decided
    if pair:
        assert abs(decided / trials - 0.05) <= 3 * error, decided
        assert abs(holds[1] / trials - 0.025) <= 3 * math.sqrt(0.025 * 0.975 / trials), holds


def test_the_seeds_table_is_the_t_half_width_at_the_grids_paired_spread():
    rng = random.Random(11)
    cells = grid(rng, SMALL_EFFECTS, 4, 5.0, 1.0)
    checked = check_grid(cells, ALPHAS, TEMPERATURES)
    sd, count = paired_spread(checked)
    ls = ("0.1", "1")
    pairs = [(ls, other) for other in SMALL_EFFECTS if other != ls]  # claim 1 (and claims 2 and 5's first)
    pairs += [(("0.1", "2"), ("0.1", "3")), (("0.0", "3"), ("0.1", "3"))]  # claim 3's second step, claim 5's second
    spreads = [statistics.stdev([cells[a][s] - cells[b][s] for s in range(4)]) for a, b in pairs]
    assert count == len(pairs) == 7 and sd == pytest.approx(statistics.median(spreads))
    for n in (2, 3, 10):
        assert detectable(sd, n, 0.95) == pytest.approx(scipy.stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
        power = (scipy.stats.t.ppf(0.975, n - 1) + scipy.stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)
        assert detectable(sd, n, 0.95, 0.8) == pytest.approx(power)
