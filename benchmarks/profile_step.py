"""Where a Glow training step's time goes, part by part, on the current Keras backend.

    python -m benchmarks.profile_step --batch_size 16
    KERAS_BACKEND=jax python -m benchmarks.profile_step --batch_size 16

(the defaults are the paper's CIFAR-10 model: 32x32x3, K=32, L=3, width
512). Every part of a level (squeeze, the ActNorm, 1x1 convolution and
coupling of a step, the coupling network and each of its three
convolutions, the split) runs alone, forward and backward (gradients for
its input and its weights), compiled (a `tf.function`, or `jax.jit`), on an
input of the shape it sees inside the model. The K steps of a level have
the same shapes, so one step is timed and counted K times. Beside each
part: the host CPU time over the wall time (how many cores it kept busy)
and the bytes per image that the backward pass keeps of it (JAX only:
`jax.ad_checkpoint.saved_residuals`, what autodiff stores before XLA
optimises). Then the optimizer's update of all the weights alone, and the
whole training step (`train_on_batch`) with --whole_step: what it takes
beyond the parts' sum is the loss, the per-step overhead and what the
parts lose or gain by running together. Compare the figures of one run
with each other; the machine's load moves them all.
"""

import argparse
import statistics
import time

import numpy as np

from benchmarks.model_flags import add_model_flags
from glow_tf.cli import runtime
from glow_tf.config import THREADS_PER_OP, GlowConfig

keras = ops = None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step")
    add = parser.add_argument
    add_model_flags(parser)
    add("--batch_size", type=int, default=16)
    add("--threads_per_op", default="auto", choices=THREADS_PER_OP)
    add("--repeats", type=int, default=3, help="timed repeats of each part; the median")
    add("--number", type=int, default=3, help="calls per timed repeat")
    add("--whole_step", action="store_true",
        help="also time the whole training step (compiles the whole model: minutes)")
    return parser.parse_args(argv)


# ---- one part, forward and backward ----

def _scalar(out):
    """A scalar that depends on every output: the sum of squares, plus a bijector's log-det."""
    y, logdet = out if isinstance(out, tuple) else (out, None)
    parts = y if isinstance(y, (tuple, list)) else (y,)
    total = sum(ops.sum(ops.square(ops.cast(p, "float32"))) for p in parts)
    return total if logdet is None else total + ops.sum(logdet)


def gradient_function(fn, variables):
    """x -> gradients of _scalar(fn(x)) for x and `variables`, compiled on the backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(autograph=False)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = _scalar(fn(x))
            return tape.gradient(loss, [x, *variables])

        return lambda x: step(tf.convert_to_tensor(x))
    import jax

    def loss(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return _scalar(fn(x))

    jitted = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda x: jitted([v.value for v in variables], x)


def saved_bytes(fn, variables, x):
    """Bytes that reverse-mode autodiff keeps of fn for the backward pass (JAX only)."""
    if keras.backend.backend() != "jax":
        return None
    # The list behind jax.ad_checkpoint.print_saved_residuals (public), which
    # only prints it.
    from jax._src.ad_checkpoint import saved_residuals

    def loss(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return _scalar(fn(x))

    values = [v.value for v in variables]
    residuals = saved_residuals(loss, values, x)
    # Arguments (the weights, x) are kept anyway; count what the pass made.
    return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a, why in residuals
               if not why.startswith("from the argument"))


def _block(result):
    for leaf in keras.tree.flatten(result):
        ops.convert_to_numpy(leaf)


def time_call(call, repeats, number):
    """(median wall seconds per call, host CPU seconds per wall second) after one untimed call."""
    _block(call())
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(number):
            result = call()
        _block(result)
        walls.append((time.perf_counter() - start) / number)
        cpus.append((time.process_time() - start_cpu) / number)
    wall = statistics.median(walls)
    return wall, statistics.median(cpus) / wall


# ---- the parts of the flow ----

def parts_of(flow, config, batch):
    """(level, name, times per step, fn, variables, input shape) for every part."""
    parts = []
    shape = (batch, *config.image_shape)
    for index, level in enumerate(flow.levels):
        squeeze, steps, *split = level.bijectors
        parts.append((index, "squeeze", 1, squeeze, [], shape))
        shape = squeeze.compute_output_shape(shape)
        # The level's template step, on its own variables: each step's math is the same.
        step = steps.template()
        actnorm, mixing, coupling = step.bijectors
        k = steps.num_steps
        parts.append((index, "actnorm", k, actnorm, actnorm.trainable_variables, shape))
        parts.append((index, type(mixing).__name__, k, mixing, mixing.trainable_variables,
                      shape))
        if hasattr(mixing, "weight"):
            parts.append((index, "  of which the weight W (LU product)", k,
                          lambda _, m=mixing: m.weight(), mixing.trainable_variables, shape))
        parts.append((index, "coupling", k, coupling, coupling.trainable_variables, shape))
        network = coupling.network
        half = (*shape[:-1], coupling.channels_a)
        hidden = (*shape[:-1], network.hidden_channels)
        parts.append((index, "  of which the network", k, network,
                      network.trainable_variables, half))
        parts.extend(_network_parts(index, k, network, half, hidden))
        if split:
            parts.append((index, "split", 1, split[0], split[0].trainable_variables, shape))
            shape = split[0].compute_output_shape(shape)[0]
    parts.append((len(flow.levels) - 1, "top prior", 1, flow.prior,
                  flow.prior.trainable_variables, shape))
    return parts


def _network_parts(level, k, network, half, hidden):
    from glow_tf.layers.networks import convolve

    def conv_in(x):
        return convolve(x, network.conv_in.kernel)

    def conv_hidden(x):
        from glow_tf.layers.base import matmul_channels

        width = network.hidden_channels
        return matmul_channels(x, ops.reshape(network.conv_hidden.kernel, (width, width)))

    return [
        (level, "    conv_in (3x3)", k, conv_in, [network.conv_in.kernel], half),
        (level, "    conv_hidden (1x1)", k, conv_hidden, [network.conv_hidden.kernel], hidden),
        (level, "    conv_out (3x3, zero-initialised)", k, network.conv_out,
         network.conv_out.trainable_variables, hidden),
    ]


def main(argv=None):
    global keras, ops
    args = parse_args(argv)
    runtime.tune_tensorflow(args.threads_per_op, args.hidden_channels)
    import keras as keras_module

    keras, ops = keras_module, keras_module.ops
    from glow_tf import Glow

    config = GlowConfig(image_shape=(args.image_size, args.image_size, args.channels),
                        k_glow=args.k_glow, l_glow=args.l_glow,
                        hidden_channels=args.hidden_channels, seed=0)
    model = Glow(config)
    rng = np.random.default_rng(0)
    rows, total = [], 0.0
    for level, name, times, fn, variables, shape in parts_of(model.flow, config,
                                                             args.batch_size):
        x = rng.normal(size=shape).astype(np.float32)
        grad = gradient_function(fn, variables)
        seconds, cores = time_call(lambda: grad(x), args.repeats, args.number)
        kept = saved_bytes(fn, variables, x)
        rows.append((level, name, times, seconds * times, cores, kept))
        if not name.startswith(" "):
            total += seconds * times

    optimizer = keras.optimizers.Adam(1e-4)
    variables = model.trainable_variables
    optimizer.build(variables)
    grads = [ops.zeros(v.shape) for v in variables]
    update_s, update_cores = time_call(_update_function(optimizer, variables, grads),
                                       args.repeats, args.number)

    print(f"Glow {config.image_shape}, K={config.k_glow}, L={config.l_glow}, width "
          f"{config.hidden_channels}, batch {args.batch_size}; keras {keras.__version__}, "
          f"backend {keras.backend.backend()}; medians of {args.repeats} x {args.number} calls")
    print("| level | part (forward + backward) | x per step | ms per step | cores busy "
          "| kept for backward, MiB per image |")
    print("|---|---|---|---|---|---|")
    for level, name, times, seconds, cores, kept in rows:
        mib = "-" if kept is None else f"{kept * times / args.batch_size / 2**20:.2f}"
        print(f"| {level + 1} | {name} | {times} | {1000 * seconds:.1f} | {cores:.2f} | {mib} |")
    print(f"| all | every part, each alone | | {1000 * total:.1f} | | |")
    print(f"| all | Adam's update of {len(variables)} weights "
          f"({sum(int(np.prod(v.shape)) for v in variables):,} parameters) | 1 "
          f"| {1000 * update_s:.1f} | {update_cores:.2f} | |")
    if args.whole_step:
        images = rng.integers(0, 256, (args.batch_size, *config.image_shape), dtype=np.uint8)
        model.initialize(images)
        model.compile(keras.optimizers.Adam(1e-4))
        model.optimizer.build(model.trainable_variables)
        step = lambda: model.train_on_batch(images, return_dict=True)["loss"]  # noqa: E731
        start = time.perf_counter()
        _block(step())
        first = time.perf_counter() - start
        seconds, cores = time_call(step, args.repeats, 1)
        print(f"| all | whole training step (train_on_batch; first call {first:.1f} s) | 1 "
              f"| {1000 * seconds:.1f} | {cores:.2f} | |")


def _update_function(optimizer, variables, grads):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        apply = tf.function(lambda: optimizer.apply(grads, variables), autograph=False)
        return apply
    import jax

    apply = jax.jit(optimizer.stateless_apply)
    state = {"optimizer": [v.value for v in optimizer.variables],
             "trainable": [v.value for v in variables]}

    def call():
        trainable, optimizer_values = apply(state["optimizer"], grads, state["trainable"])
        state["trainable"], state["optimizer"] = trainable, optimizer_values
        return trainable

    return call


if __name__ == "__main__":
    main()
