"""From the code-fraction sweep to a decision: fit a mixture law per category (code fraction r ->
the category's bits per byte), pick the form by leave-one-out error, and recommend the r that
minimises one category's bpb, optionally with a bound on another's, with a bootstrap interval.

Candidate forms:
    quadratic    y = a + b r + c r^2         (a RegMix-style regression on the mixture weight)
    exponential  y = c + k exp(t r)          (the data-mixing law of Ye et al. 2024, one domain)
The exponential is fitted by a grid over t with c, k by least squares at each t (no optimiser to
diverge on four sweep points)."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

GRID = np.linspace(0.0, 1.0, 1001)  # candidate code fractions
RATES = np.linspace(-10.0, 10.0, 401)  # the exponential's t values tried
Law = Callable[[np.ndarray], np.ndarray]


def fit_quadratic(r: np.ndarray, y: np.ndarray) -> Law:
    coef = np.polyfit(r, y, deg=min(2, len(r) - 1))
    return lambda x: np.polyval(coef, x)


def fit_exponential(r: np.ndarray, y: np.ndarray) -> Law:
    x = np.exp(RATES[:, None] * r[None, :])  # [rates, points]: simple linear regression of y on x per t
    dx = x - x.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(np.sum(dx ** 2, axis=1) > 0, dx @ (y - y.mean()) / np.sum(dx ** 2, axis=1), 0.0)
    c = y.mean() - k * x.mean(axis=1)
    errors = np.sum((c[:, None] + k[:, None] * x - y) ** 2, axis=1)
    best = int(np.argmin(errors))
    t, c_best, k_best = RATES[best], c[best], k[best]
    return lambda v: c_best + k_best * np.exp(t * np.asarray(v))


FORMS: dict[str, Callable[[np.ndarray, np.ndarray], Law]] = {"quadratic": fit_quadratic, "exponential": fit_exponential}


@dataclass(frozen=True)
class Fit:
    form: str
    law: Law
    loo_rmse: dict[str, float]  # each form's leave-one-out root mean squared error


def loo_rmse(fit: Callable[[np.ndarray, np.ndarray], Law], r: np.ndarray, y: np.ndarray) -> float:
    errors = [fit(np.delete(r, i), np.delete(y, i))(r[i:i + 1])[0] - y[i] for i in range(len(r))]
    return float(np.sqrt(np.mean(np.square(errors))))


def fit_law(r, y) -> Fit:
    """The form with the lowest leave-one-out error (needs at least 4 sweep points), refitted on all."""
    r, y = np.asarray(r, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(r) < 4:
        raise ValueError(f"a mixture law needs at least 4 sweep points, got {len(r)}")
    errors = {name: loo_rmse(fit, r, y) for name, fit in FORMS.items()}
    form = min(errors, key=errors.get)
    return Fit(form, FORMS[form](r, y), errors)


def best_fraction(target: Law, bound: tuple[Law, float] | None = None, low: float = 0.0, high: float = 1.0) -> float:
    """The r in [low, high] minimising `target`, among those where bound's law stays <= its limit."""
    grid = GRID[(GRID >= low) & (GRID <= high)]
    allowed = np.ones_like(grid, dtype=bool) if bound is None else bound[0](grid) <= bound[1]
    if not allowed.any():
        return float("nan")
    values = np.where(allowed, target(grid), np.inf)
    return float(grid[int(np.argmin(values))])


@dataclass(frozen=True)
class Recommendation:
    fraction: float
    low: float
    high: float
    target: Fit
    bound: Fit | None
    refits: int  # bootstrap refits drawn
    infeasible: int  # of them, those whose bound law allowed no fraction (left out of the interval)


def recommend(r, target_y, bound_y=None, bound_limit: float | None = None, resamples: int = 500,
              level: float = 0.95, seed: int = 0) -> Recommendation:
    """The recommended code fraction, and an interval from refitting on residual-bootstrapped sweeps
    (each form kept; the search stays within the sweep's range: no extrapolation)."""
    r = np.asarray(r, dtype=np.float64)
    rng = np.random.default_rng(seed)
    series = [np.asarray(target_y, dtype=np.float64)] + ([] if bound_y is None else [np.asarray(bound_y, dtype=np.float64)])
    fits = [fit_law(r, y) for y in series]
    span = (float(r.min()), float(r.max()))

    def decide(laws: list[Law]) -> float:
        return best_fraction(laws[0], None if len(laws) == 1 else (laws[1], bound_limit), *span)

    point = decide([f.law for f in fits])
    if np.isnan(point):
        grid = GRID[(GRID >= span[0]) & (GRID <= span[1])]
        lowest = fits[1].law(grid)
        raise ValueError(f"no code fraction in {100 * span[0]:.0f}-{100 * span[1]:.0f}% keeps the fitted bound at "
                         f"or below {bound_limit} (its lowest is {lowest.min():.3f}, at "
                         f"{100 * grid[int(np.argmin(lowest))]:.0f}%)")
    draws = []
    for _ in range(resamples):
        laws = []
        for fit, y in zip(fits, series):
            residuals = y - fit.law(r)
            laws.append(FORMS[fit.form](r, fit.law(r) + rng.choice(residuals, size=len(r), replace=True)))
        draws.append(decide(laws))
    feasible = np.asarray([d for d in draws if not np.isnan(d)])
    tail = (1 - level) / 2
    low, high = (np.quantile(feasible, [tail, 1 - tail]) if len(feasible) else (np.nan, np.nan))
    return Recommendation(point, float(low), float(high), fits[0], fits[1] if len(fits) > 1 else None,
                          refits=resamples, infeasible=resamples - len(feasible))
