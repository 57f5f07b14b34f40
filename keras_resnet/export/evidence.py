"""What an evaluation set can tell about a quantized export: counts, intervals, exact tests.

Pure Python and NumPy (no SciPy), so the gates run wherever the exporters do. Every interval
is two-sided at 95% (``Z95``, ``ALPHA``); a one-sided decision made from one of its bounds is
therefore at the 2.5% level.

- :func:`wilson_interval`: the Wilson score interval of a proportion (top-1 agreement, an
  accuracy). Unlike the normal ("Wald") interval it stays inside [0, 1] and keeps its
  coverage at 0 or ``n`` successes, which is where agreement sits.
- :func:`clopper_pearson`: the exact interval of a binomial proportion.
- :func:`mcnemar_exact`: McNemar's exact test on the discordant pairs of a paired comparison
  (images the float model gets right and the quantized one wrong, ``b``, and the reverse,
  ``c``): under "no change in accuracy", ``b`` of the ``b + c`` discordant images is
  Binomial(b + c, 1/2).
- :func:`accuracy_change_interval`: the accuracy change ``(c - b) / n`` with the exact
  interval that follows from that binomial, conditional on ``b + c`` (the interval McNemar's
  exact test inverts).
"""

import math

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
ALPHA = 0.05


def wilson_interval(successes, n, z=Z95):
    """The Wilson score interval ``(low, high)`` of ``successes`` out of ``n``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def _log_binomial_coefficients(m):
    k = np.arange(1, m + 1, dtype="float64")
    return np.concatenate([[0.0], np.cumsum(np.log(m - k + 1) - np.log(k))])


def _binomial_tail(logc, k, p, upper):
    """``P(X >= k)`` (``upper``) or ``P(X <= k)`` for X ~ Binomial(len(logc) - 1, p)."""
    m = len(logc) - 1
    if p <= 0.0:
        return 1.0 if (not upper or k <= 0) else 0.0
    if p >= 1.0:
        return 1.0 if (upper or k >= m) else 0.0
    ks = np.arange(m + 1, dtype="float64")
    logpmf = logc + ks * math.log(p) + (m - ks) * math.log1p(-p)
    part = logpmf[k:] if upper else logpmf[:k + 1]
    if part.size == 0:
        return 0.0
    top = float(np.max(part))
    return float(min(1.0, math.exp(top) * np.sum(np.exp(part - top))))


def binomial_tail(k, m, p, upper=True):
    """``P(X >= k)`` (``upper``) or ``P(X <= k)`` for X ~ Binomial(m, p), exactly."""
    return _binomial_tail(_log_binomial_coefficients(m), k, p, upper)


def clopper_pearson(k, m, alpha=ALPHA):
    """The exact (Clopper-Pearson) interval ``(low, high)`` of a binomial proportion: ``low``
    solves ``P(X >= k | p) = alpha / 2`` and ``high`` solves ``P(X <= k | p) = alpha / 2``."""
    if m <= 0:
        return 0.0, 1.0
    logc = _log_binomial_coefficients(m)

    def solve(upper):
        lo, hi = 0.0, 1.0
        for _ in range(100):  # bisection to float64 resolution
            mid = (lo + hi) / 2
            tail = _binomial_tail(logc, k, mid, upper)
            # P(X >= k | p) grows with p; P(X <= k | p) falls with p
            if (tail < alpha / 2) == upper:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if k <= 0 else solve(True)
    high = 1.0 if k >= m else solve(False)
    return low, high


def mcnemar_exact(b, c):
    """Two-sided p-value of McNemar's exact test: ``min(1, 2 P(X <= min(b, c)))`` for
    X ~ Binomial(b + c, 1/2); 1.0 when there are no discordant pairs."""
    m = b + c
    if m == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_tail(min(b, c), m, 0.5, upper=False))


def accuracy_change_interval(b, c, n, alpha=ALPHA):
    """``(change, low, high)``: the accuracy change ``(c - b) / n`` of a paired comparison and
    its exact interval conditional on the ``m = b + c`` discordant pairs (``b`` ~
    Binomial(m, q); change = m (1 - 2q) / n)."""
    m = b + c
    if n <= 0:
        return 0.0, -1.0, 1.0
    if m == 0:
        return 0.0, 0.0, 0.0
    q_low, q_high = clopper_pearson(b, m, alpha)
    return (c - b) / n, m * (1 - 2 * q_high) / n, m * (1 - 2 * q_low) / n


def chance_rate(num_classes):
    """The accuracy of guessing among ``num_classes`` classes: 1 / classes."""
    return 1.0 / max(int(num_classes), 1)


def at_chance(correct, n, chance, alpha=ALPHA):
    """Whether ``correct`` of ``n`` is no evidence of doing better than ``chance``: the
    exact interval's lower bound does not exceed it."""
    return n > 0 and clopper_pearson(correct, n, alpha)[0] <= chance


def at_chance_message(accuracy, chance):
    digits = 0 if chance >= 0.01 else 2  # 1,000 classes: chance 0.10%
    return (f"the float model's accuracy is {accuracy:.{digits}%} (chance {chance:.{digits}%}): "
            "train longer before judging quantization")
