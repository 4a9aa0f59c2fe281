"""Where a Glow training step's time goes, layer kind by layer kind (TensorFlow).

    python -m benchmarks.profile_step --image_size 32 --k_glow 4 --l_glow 3 \\
        --hidden_channels 128 --batch_size 16

Runs each bijector of the flow alone, forward and backward (gradients for
its input and its weights) in its own `tf.function`, on the input it sees
inside the model, and sums the times per kind of layer. The coupling
networks are also timed alone, to split a coupling's time into its network
and the coupling's own arithmetic. Then the whole training step
(`train_on_batch`) for comparison: what it takes beyond the layers' sum is
the loss, the optimizer update and the per-step overhead. Compare the
figures of one run with each other; the machine's load moves them all.
"""

import argparse
import collections
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from glow_tf import Glow, GlowConfig
from glow_tf.layers.chain import unchained
from glow_tf.layers.coupling import Coupling


def _time(fn, repeats, number):
    fn()  # traces
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            result = fn()
        tf.nest.map_structure(lambda t: getattr(t, "numpy", lambda: t)(), result)
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def _forward_backward(layer, x):
    variables = layer.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            y, logdet = out if isinstance(out, tuple) else (out, 0.0)  # a network: no logdet
            parts = y if isinstance(y, tuple) else (y,)  # a split's two halves
            loss = sum(tf.reduce_sum(tf.cast(part, "float32") ** 2) for part in parts) \
                + tf.reduce_sum(logdet)
        return tape.gradient(loss, [x, *variables])

    return step


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--k_glow", type=int, default=4)
    parser.add_argument("--l_glow", type=int, default=3)
    parser.add_argument("--hidden_channels", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--number", type=int, default=5, help="calls per timed repeat")
    args = parser.parse_args()

    config = GlowConfig(image_shape=(args.image_size, args.image_size, 3), k_glow=args.k_glow,
                        l_glow=args.l_glow, hidden_channels=args.hidden_channels, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (args.batch_size, *config.image_shape),
                                               dtype=np.uint8)
    model = Glow(config)
    model.initialize(images)

    per_kind = collections.defaultdict(float)
    h = tf.random.uniform((args.batch_size, *config.image_shape), -0.5, 0.5)
    for layer in [*unchained(model.flow.levels), model.flow.prior]:
        kind = type(layer).__name__
        per_kind[kind] += _time(_forward_backward(layer, h), args.repeats, args.number)
        if isinstance(layer, Coupling):
            x_a = h[..., : layer.channels_a]
            per_kind["(of which CouplingNetwork)"] += _time(
                _forward_backward(layer.network, x_a), args.repeats, args.number)
        h = layer(h)[0]
        if isinstance(h, tuple):  # a split: the kept half goes on
            h = h[0]
    layers_ms = 1000 * sum(v for k, v in per_kind.items() if not k.startswith("("))

    model.compile(keras.optimizers.Adam(1e-4), jit_compile=False)
    step_ms = 1000 * _time(lambda: model.train_on_batch(images, return_dict=True)["loss"],
                           args.repeats, args.number)

    print(f"Glow {config.image_shape}, K={config.k_glow}, L={config.l_glow}, width "
          f"{config.hidden_channels}, batch {args.batch_size}; TensorFlow, no XLA; "
          f"medians of {args.repeats} x {args.number} calls")
    print("| part | ms per step | share of the train step |")
    print("|---|---|---|")
    for kind, seconds in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} fwd+bwd | {1000 * seconds:.1f} | {100 * seconds * 1000 / step_ms:.0f}% |")
    print(f"| all layers, each alone | {layers_ms:.1f} | {100 * layers_ms / step_ms:.0f}% |")
    print(f"| whole train step (train_on_batch) | {step_ms:.1f} | 100% |")


if __name__ == "__main__":
    main()
