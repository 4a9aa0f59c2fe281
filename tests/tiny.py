"""The tiny models and runs the tests share: one source for their sizes. No imports, so
every test (core, JAX subprocess, worker scripts) can use it."""

# A tiny Glow of the core tests: 4x4x2 images, K=2, L=2, width 8.
TINY_MODEL = dict(image_shape=(4, 4, 2), k_glow=2, l_glow=2, hidden_channels=8, n_bits=5, seed=0)
# The digits preset shrunk to seconds per epoch: 8x8 digits, K=1, L=2, width 8; the
# settings every tiny training run starts from. One epoch is 22 steps of 64 images.
TINY_DIGITS = {"k_glow": 1, "l_glow": 2, "hidden_channels": 8, "n_init": 64, "warmup": 0.5}
STEPS_PER_EPOCH = 22
# The same Glow as a GlowConfig's fields, on the digits' 8x8 4-bit images.
TINY_DIGITS_MODEL = dict(image_shape=(8, 8, 1), n_bits=4, seed=0, k_glow=1, l_glow=2,
                         hidden_channels=8)


def as_flags(settings):
    """main.py's flags for a dict of settings: ["--k_glow=1", ...]."""
    return [f"--{name}={value}" for name, value in settings.items()]
