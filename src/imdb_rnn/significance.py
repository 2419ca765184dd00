"""How sure a test-set comparison is: bootstrap intervals and McNemar's exact test over the test reviews.

Every function takes `correct` arrays: one bool per test review (shape (N,)), True where a model's
prediction is right, in the same review order for every model (the evaluate stage's predictions).
The statistics are scipy's: `scipy.stats.bootstrap` (percentile intervals) and `scipy.stats.binomtest`;
the correction for testing several rows is statsmodels' `multipletests`.
"""

import numpy as np

BATCH = 250  # resamples per vectorised step: 25,000 reviews x 250 stays small in memory


def accuracy_interval(correct, resamples, confidence, seed):
    """(low, high) of a percentile bootstrap interval for the accuracy mean(correct), resampling reviews."""
    # scipy.stats' import costs half a second; check_params imports compare, and so this module, without it
    from scipy.stats import bootstrap

    result = bootstrap(
        (np.asarray(correct, np.float64),),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
        batch=BATCH,
        vectorized=True,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _difference(a, b, axis=-1):
    return a.mean(axis=axis) - b.mean(axis=axis)


def paired_difference(correct_a, correct_b, resamples, confidence, seed):
    """(accuracy of a − accuracy of b, low, high): a paired percentile bootstrap over reviews, both
    models resampled on the same reviews, so their shared easy and hard reviews cancel out."""
    from scipy.stats import bootstrap  # imported here: see accuracy_interval

    a, b = np.asarray(correct_a, np.float64), np.asarray(correct_b, np.float64)
    result = bootstrap(
        (a, b),
        _difference,
        paired=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
        batch=BATCH,
        vectorized=True,
    )
    return float(a.mean() - b.mean()), float(result.confidence_interval.low), float(result.confidence_interval.high)


def mcnemar_exact(correct_a, correct_b):
    """McNemar's exact test (McNemar 1947) of two models on the same reviews: the two-sided p-value that the
    reviews only a gets right and those only b gets right are equally likely, a binomial test on the
    discordant pairs. 1.0 when the models agree on every review."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"the two models were scored on different review sets: {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    from scipy.stats import binomtest  # imported here: see accuracy_interval

    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def adjust_p_values(p_values, method):
    """The p-values [K] adjusted for testing K hypotheses at once: `holm` (Holm 1979, step-down
    Bonferroni: controls the chance of any false "shown worse" among the K at alpha) or `none`
    (returned as they are). Raises ValueError for another method."""
    p_values = [float(p) for p in p_values]
    if method == "none" or not p_values:
        return p_values
    if method != "holm":
        raise ValueError(f"unknown multiple-testing correction {method!r}: holm or none")
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, method="holm")[1]]
