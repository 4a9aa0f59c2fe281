"""The bar for `python main.py --dataset digits`: a per-pixel histogram model.

Each of the 64 pixels gets its own categorical distribution over the 16
levels of the 4-bit digits, fitted on the training split with add-alpha
(Laplace) smoothing, and pixels are independent. Its test bits/dim is the
exact discrete NLL, -mean log2 p, on the same data and split that main.py
uses (glow_tf.tf.pipelines), so a Glow that models anything beyond the per-pixel
marginals should beat it.

    python -m benchmarks.digits_histogram_baseline
"""

import numpy as np

from glow_tf.datasets import DataConfig
from glow_tf.tf import pipelines


def histogram_bits_per_dim(train_levels, test_levels, levels, alpha):
    train = train_levels.reshape(len(train_levels), -1)
    test = test_levels.reshape(len(test_levels), -1)
    counts = np.stack([(train == k).sum(axis=0) for k in range(levels)], axis=1) + alpha
    probabilities = counts / counts.sum(axis=1, keepdims=True)  # (pixels, levels)
    return float(-np.log2(probabilities[np.arange(train.shape[1]), test]).mean())


def main():
    n_bits = 4
    config = DataConfig("digits", img_size=8, channel_size=1, n_bits=n_bits)
    splits = {
        split: np.stack(list(pipelines.load_split(config, split).as_numpy_iterator())) >> (8 - n_bits)
        for split in ("train", "test")
    }
    print(f"digits, {n_bits} bits, {len(splits['train'])} train / {len(splits['test'])} test images")
    print("| smoothing alpha | train bits/dim (in-sample) | test bits/dim |")
    print("|---|---|---|")
    for alpha in (1.0, 0.5):
        train = histogram_bits_per_dim(splits["train"], splits["train"], 2**n_bits, alpha)
        test = histogram_bits_per_dim(splits["train"], splits["test"], 2**n_bits, alpha)
        print(f"| {alpha} | {train:.4f} | {test:.4f} |")


if __name__ == "__main__":
    main()
