"""Checks a glow-export SavedModel against the Keras model's values, with TensorFlow alone.

    python -I tests/cli/saved_model_check.py EXPORT_DIR REFERENCES.npz

test_export.py writes REFERENCES.npz from the Keras model and runs this
script with -I from a temporary folder, so that neither the repository nor
PYTHONPATH is on sys.path; glow_tf is also blocked outright, for an
environment where it is installed. Prints one line per check; a failed
check raises.
"""

import importlib.abc
import sys


class NoGlowTF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "glow_tf" or name.startswith("glow_tf."):
            raise ImportError(f"{name} is blocked: the export must serve without glow_tf")
        return None


sys.meta_path.insert(0, NoGlowTF())
try:
    import glow_tf  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError("glow_tf can be imported here")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SIGNATURES = {"bits_per_dim", "log_prob", "encode", "decode", "sample", "serving_default"}


def close(actual, expected, what, rtol=1e-4, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol, err_msg=what)


def same_images(actual, expected, n_bits, what):
    """uint8 images equal but for values that sit on a rounding boundary."""
    actual = np.asarray(actual)
    assert actual.dtype == np.uint8 and actual.shape == expected.shape, (what, actual.shape)
    difference = np.abs(actual.astype(int) - expected.astype(int))
    one_level = 255 // (2**n_bits - 1)
    assert difference.max() <= one_level and np.mean(difference > 0) <= 0.01, what


def main(export_dir, references):
    ref = dict(np.load(references))
    export = tf.saved_model.load(export_dir)
    assert set(export.signatures) == SIGNATURES, sorted(export.signatures)
    default, scores = export.signatures["serving_default"], export.signatures["bits_per_dim"]
    assert default.structured_input_signature == scores.structured_input_signature
    assert set(default.structured_outputs) == {"bits_per_dim"}
    levels = int(ref["levels"])
    seed = int(ref["seed"])
    conditional = "labels" in ref

    for n in (1, 7):
        labels = {"labels": ref["labels"][:n]} if conditional else {}
        images, x = ref["images"][:n], ref["x"][:n]

        bpd = export.bits_per_dim(images=images, seed=seed, **labels)["bits_per_dim"]
        close(bpd, ref[f"bits_per_dim_{n}"], f"bits_per_dim, batch {n}")
        if n == 7:
            served = default(images=tf.constant(images), seed=tf.constant(seed),
                             **{k: tf.constant(v) for k, v in labels.items()})
            close(served["bits_per_dim"], ref["bits_per_dim_7"], "serving_default")
        close(export.log_prob(x=x, **labels)["log_prob"], ref[f"log_prob_{n}"],
              f"log_prob, batch {n}")

        latents = export.encode(x=x, **labels)
        assert sorted(latents) == [f"latent_{level}" for level in range(levels)], sorted(latents)
        for level in range(levels):
            close(latents[f"latent_{level}"], ref[f"latent_{level}_{n}"],
                  f"latent {level}, batch {n}", atol=1e-4)
        close(export.decode(**latents, **labels)["x"], x, f"decode(encode(x)), batch {n}",
              atol=1e-4)
        # sample(temperature=0) in floats, before its uint8 rounding: the priors' means.
        means = {name: tf.zeros_like(latent) for name, latent in latents.items()}
        close(np.clip(export.decode(**means, **labels)["x"], -0.5, 0.5), ref[f"sample_0_{n}"],
              f"decoded means (sample at temperature 0), batch {n}", atol=1e-4)

        for temperature in (0.0, 0.7):
            count = {"labels": labels["labels"]} if conditional else {"n": n}
            images = export.sample(**count, temperature=temperature, seed=seed)["images"]
            same_images(images, ref[f"images_{temperature}_{n}"], int(ref["n_bits"]),
                        f"sample at temperature {temperature}, batch {n}")
        print(f"batch {n}: bits_per_dim, log_prob, encode, decode, sample agree")

    x = tf.constant(ref["x"])
    labels = {"labels": ref["labels"]} if conditional else {}
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(export.log_prob(x=x, **labels)["log_prob"])
    gradient, expected = tape.gradient(total, x).numpy(), ref["log_prob_gradient"]
    close(gradient, expected, "gradient of log_prob", atol=1e-4 * np.abs(expected).max())
    print("gradient of log_prob agrees")

    assert not [name for name in sys.modules if name.split(".")[0] == "glow_tf"]
    print(f"checked {export_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
