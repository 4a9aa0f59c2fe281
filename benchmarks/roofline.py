"""The arithmetic of a Glow's training step, and the fastest step this machine's
matmuls allow.

    python -m benchmarks.roofline                          # TensorFlow
    KERAS_BACKEND=jax python -m benchmarks.roofline        # the same on JAX
    python -m benchmarks.roofline --before 3.355           # and the ratio a target needs

Counts the multiply-adds of a training step from the model's shapes: the
coupling networks' convolutions, the 1x1 convolutions and the split
priors (ActNorm, the LU product, the squeezes and the optimizer are under
1% of them; docs/performance.md#where-the-papers-step-goes). Training does
each layer's product three times (forward, and the gradients of its input
and of its weights). Then times the backend's matmul, in float32 and
bfloat16, at the shape of the step's largest op (the first level's hidden
1x1 convolution: batch x 16 x 16 pixels by 512 by 512) and at a large
square one, and prints the shortest step each rate allows. Those rates are
what the machine does on the friendliest shapes, so no code change gets
the step below that floor at that precision; a target under it needs less
arithmetic (a narrower network, a smaller batch) or a faster number type.
Keras only: runs on either backend without the other.
"""

import argparse
import time

import keras
from keras import ops

from glow_tf.config import GlowConfig


def step_multiply_adds(config, batch_size):
    """Multiply-adds of one training step (forward, and backward at twice the forward)."""
    height, width, channels = config.image_shape
    hidden = config.hidden_channels
    forward = 0
    for level in range(config.l_glow):
        height, width, channels = height // 2, width // 2, channels * 4
        pixels = height * width
        half = channels // 2
        out = channels if config.coupling == "affine" else channels - half
        per_step = (channels * channels  # the invertible 1x1 convolution
                    + 9 * half * hidden  # conv_in, 3x3
                    + hidden * hidden  # conv_hidden, 1x1
                    + 9 * hidden * out)  # conv_out, 3x3
        forward += config.k_glow * pixels * per_step
        if level < config.l_glow - 1:
            forward += pixels * 9 * half * channels  # the split's prior, a 3x3 conv
            channels = half
    return 3 * batch_size * forward


def seconds_per_matmul(rows, inner, cols, dtype, calls):
    """Best time of one (rows, inner) @ (inner, cols) matmul over `calls` calls."""
    a = ops.cast(keras.random.normal((rows, inner), seed=1), dtype)
    b = ops.cast(keras.random.normal((inner, cols), seed=2), dtype)
    done = lambda x: ops.convert_to_numpy(x[:1, :1])  # waits for x on either backend
    done(ops.matmul(a, b))
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        done(ops.matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--k_glow", type=int, default=32)
    parser.add_argument("--l_glow", type=int, default=3)
    parser.add_argument("--hidden_channels", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--square", type=int, default=2048, help="size of the square matmul")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per matmul (best kept)")
    parser.add_argument("--before", type=float, default=None,
                        help="the step time (s) of the code to compare with: prints the "
                             "ratio to it that each floor stands at")
    args = parser.parse_args(argv)
    for name in ("image_size", "k_glow", "l_glow", "hidden_channels", "batch_size", "square",
                 "calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)}: expected a positive integer.")

    config = GlowConfig(image_shape=(args.image_size, args.image_size, args.channels),
                        k_glow=args.k_glow, l_glow=args.l_glow,
                        hidden_channels=args.hidden_channels)
    flops = 2 * step_multiply_adds(config, args.batch_size)
    pixels = args.batch_size * (args.image_size // 2) ** 2
    width = args.hidden_channels
    print(f"Glow {config.image_shape}, K={config.k_glow}, L={config.l_glow}, width {width}, "
          f"batch {args.batch_size}: {flops / 1e9:.1f} GFLOP per training step; "
          f"keras {keras.__version__}, backend {keras.backend.backend()}")
    print("| matmul | dtype | ms per call (best) | GFLOP/s | step floor s | floor / before |")
    print("|---|---|---|---|---|---|")
    for rows, inner, cols, what in [(pixels, width, width, "largest op"),
                                    (args.square, args.square, args.square, "square")]:
        for dtype in ("float32", "bfloat16"):
            seconds = seconds_per_matmul(rows, inner, cols, dtype, args.calls)
            rate = 2 * rows * inner * cols / seconds
            floor = flops / rate
            ratio = f"{floor / args.before:.2f}x" if args.before else "-"
            print(f"| {rows}x{inner}x{cols} ({what}) | {dtype} | {1e3 * seconds:.2f} | "
                  f"{rate / 1e9:.3g} | {floor:.3g} | {ratio} |")


if __name__ == "__main__":
    main()
