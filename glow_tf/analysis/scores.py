"""Scoring a trained Glow: test bits/dim with its standard error, and the OOD AUROC.

Backend-agnostic (numpy and the model's own methods): the inputs are numpy
batches, so the caller decides where the images come from (`evaluate.py`
reads them from glow_tf.tf.pipelines).

The out-of-distribution report follows Nalisnick et al. 2019, "Do Deep
Generative Models Know What They Don't Know?": score every image of an
in-distribution and an out-of-distribution test set by its bits/dim, compare
the two histograms, and ask how well bits/dim alone separates the sets
(AUROC). Their finding: a Glow trained on CIFAR-10 gives SVHN *lower*
bits/dim, an AUROC below 0.5.
"""

import math

import keras
import numpy as np
from keras import ops


def per_image_bits_per_dim(model, batches, seed=0, marginal=False):
    """Bits/dim of every image in `batches`, as one float64 array.

    Args:
        batches: an iterable of (images, labels) numpy pairs; labels is None
            for an unconditional model, and ignored when `marginal`.
        seed: seeds the dequantisation noise (one draw per image, the paper's
            measure), so a rerun gives the same numbers.
        marginal: for a class-conditional model, score p(x) = mean over
            classes of p(x | y) (a uniform class prior) instead of p(x | y) at
            the given label. Out-of-distribution images have no label.
    """
    generator = keras.random.SeedGenerator(seed)
    num_classes = model.config.num_classes
    scores = []
    for images, labels in batches:
        if marginal and num_classes:
            scores.append(_marginal_bits_per_dim(model, images, num_classes, generator))
        else:
            bpd = model.bits_per_dim(images, labels if num_classes else None, seed=generator)
            scores.append(ops.convert_to_numpy(bpd))
    if not scores:
        raise ValueError("No images to score: the dataset is empty.")
    return np.concatenate(scores).astype(np.float64)


def _marginal_bits_per_dim(model, images, num_classes, generator):
    # The same dequantisation noise under every label: draw one int seed.
    seed = int(ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1, seed=generator)))
    per_class = np.stack([
        ops.convert_to_numpy(
            model.bits_per_dim(images, np.full(len(images), c, np.int32), seed=seed)
        ).astype(np.float64)
        for c in range(num_classes)
    ])
    # -log2 mean_c 2^(-D bpd_c) / D, computed stably in log space.
    num_dims = model.config.num_dims
    log2_terms = -num_dims * per_class
    top = log2_terms.max(axis=0)
    log2_mean = top + np.log2(np.mean(np.exp2(log2_terms - top), axis=0))
    return -log2_mean / num_dims


def mean_and_standard_error(values):
    """(mean, standard error of the mean) of a 1-D array; s.e. is 0 for one value."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values has shape {values.shape}; expected a non-empty 1-D array.")
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def auroc(negatives, positives):
    """Area under the ROC curve of a score that should be higher for `positives`.

    Computed from ranks (the Mann-Whitney U statistic): the probability that
    a random positive scores above a random negative, ties counting one half.
    With bits/dim as the score and the OOD set as the positives, 1 means
    bits/dim flags every OOD image, 0.5 chance, and below 0.5 that the model
    prefers the OOD images (Nalisnick et al.'s finding).
    """
    negatives = np.asarray(negatives, np.float64).ravel()
    positives = np.asarray(positives, np.float64).ravel()
    if negatives.size == 0 or positives.size == 0:
        raise ValueError(
            f"auroc needs scores in both sets; got {negatives.size} negatives and "
            f"{positives.size} positives."
        )
    scores = np.concatenate([negatives, positives])
    if not np.all(np.isfinite(scores)):
        raise ValueError("auroc: the scores hold NaN or infinite values.")
    ranks = _average_ranks(scores)
    positive_rank_sum = ranks[negatives.size:].sum()
    u = positive_rank_sum - positives.size * (positives.size + 1) / 2
    return float(u / (positives.size * negatives.size))


def _average_ranks(values):
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values, and the run each value is in.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    run = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(values.size)
    ranks[order] = ((starts + 1 + ends) / 2)[run]
    return ranks
