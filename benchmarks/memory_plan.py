"""The memory a Glow training step needs, by model, batch size and --remat (JAX).

    KERAS_BACKEND=jax python -m benchmarks.memory_plan
    KERAS_BACKEND=jax python -m benchmarks.memory_plan --models 32:3 --compiled

For each model (IMAGE_SIZE:LEVELS, K=32 and width 512 unless told), batch
size and remat setting it measures, without running a step (so the plan
covers models that do not fit the machine):

- the training state: the weights, their gradients and Adam's two slots,
  4 bytes each per parameter (and Polyak averaging's copy with --polyak);
- the activations that the backward pass keeps: every array that reverse-
  mode autodiff saves for it, traced at the batch size (JAX's
  saved_residuals, the list behind jax.ad_checkpoint.print_saved_residuals);
  with --remat, plus what one step of each level keeps, since the backward
  pass recomputes the steps one at a time;
- with --compiled, instead, XLA's buffer assignment of the whole compiled
  training step, Adam included (`Compiled.memory_analysis()`, compiled for
  the machine's JAX device with the weights and slots donated, as Keras'
  JAX trainer does): what the step allocates, its arguments and the ops'
  working space included. Minutes per row on a CPU.

Then it fits, per model and remat setting, peak = state + batch x per_image
by least squares over the batch sizes, and prints the largest batch that
fits 16, 40 and 80 GiB. Compare with the process's measured peak resident
memory (benchmarks/train_step.py) where a step fits the machine: a CPU
process also holds the runtime's code and caches, about a gigabyte.
"""

import argparse
import dataclasses
import time

import numpy as np

keras = ops = None

GIB = 2**30


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_plan")
    add = parser.add_argument
    add("--models", default="32:3,64:4,256:6",
        help="comma-separated IMAGE_SIZE:LEVELS (3 colour channels)")
    add("--k_glow", type=int, default=32)
    add("--hidden_channels", type=int, default=512)
    add("--batch_sizes", default="1,4,16")
    add("--remat", default="no,yes", help="comma-separated: no, yes")
    add("--loop", default="loop", choices=("auto", "loop", "unrolled"),
        help="how levels run their steps; the loop compiles fastest, and the memory is "
        "the same")
    add("--precision", default="float32")
    add("--polyak", action="store_true", help="count Polyak averaging's copy of the weights")
    add("--compiled", action="store_true",
        help="XLA's buffer assignment of the compiled step, instead of the saved activations")
    return parser.parse_args(argv)


def saved_activations(config, batch, remat, loop):
    """(bytes the backward pass keeps, parameters): traced, not run (JAX)."""
    import jax
    from jax._src.ad_checkpoint import saved_residuals  # print_saved_residuals' list

    from glow_tf import Glow
    from glow_tf.model import log_density

    model = Glow(config, remat=remat, loop=loop)
    trainable = model.trainable_variables

    def loss(values, x):
        with keras.StatelessScope(state_mapping=list(zip(trainable, values))):
            return -ops.mean(log_density(*model.flow(x)))

    x = jax.ShapeDtypeStruct((batch, *config.image_shape), "float32")
    residuals = saved_residuals(loss, [v.value for v in trainable], x)
    kept = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a, why in residuals
               if not why.startswith("from the argument"))
    return kept, sum(int(np.prod(v.shape)) for v in trainable)


def compiled_step(config, batch, remat, loop, polyak):
    """XLA's memory statistics of one compiled training step (JAX), and the parameter count."""
    import jax

    from glow_tf import Glow
    from glow_tf.model import log_density

    model = Glow(config, remat=remat, loop=loop)
    optimizer = keras.optimizers.Adam(1e-4, use_ema=polyak)
    trainable = model.trainable_variables
    optimizer.build(trainable)
    non_trainable = model.non_trainable_variables

    def step(trainable_values, optimizer_values, non_trainable_values, x):
        def loss(values):
            mapping = [*zip(trainable, values), *zip(non_trainable, non_trainable_values)]
            with keras.StatelessScope(state_mapping=mapping):
                return -ops.mean(log_density(*model.flow(x)))

        value, grads = jax.value_and_grad(loss)(trainable_values)
        trainable_values, optimizer_values = optimizer.stateless_apply(
            optimizer_values, grads, trainable_values)
        return value, trainable_values, optimizer_values

    args = ([v.value for v in trainable], [v.value for v in optimizer.variables],
            [v.value for v in non_trainable],
            jax.ShapeDtypeStruct((batch, *config.image_shape), "float32"))
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(*args).compile()
    seconds = time.perf_counter() - start
    stats = compiled.memory_analysis()
    parameters = sum(int(np.prod(v.shape)) for v in trainable)
    return stats, parameters, seconds


def fit_line(batches, values):
    """(intercept, slope) of the least-squares line through (batch, value)."""
    slope, intercept = np.polyfit(np.asarray(batches, float), np.asarray(values, float), 1)
    return intercept, slope


def main(argv=None):
    global keras, ops
    args = parse_args(argv)
    import keras as keras_module

    keras, ops = keras_module, keras_module.ops
    if keras.backend.backend() != "jax":
        raise SystemExit("benchmarks.memory_plan reads XLA's buffer assignment: run it with "
                         "KERAS_BACKEND=jax.")
    from glow_tf import GlowConfig, precision

    batches = [int(b) for b in args.batch_sizes.split(",")]
    models = [tuple(int(n) for n in m.split(":")) for m in args.models.split(",")]
    remats = [r == "yes" for r in args.remat.split(",")]
    rows, fits = [], []
    for size, levels in models:
        config = GlowConfig(image_shape=(size, size, 3), k_glow=args.k_glow, l_glow=levels,
                            hidden_channels=args.hidden_channels, seed=0)
        for remat in remats:
            peaks = []
            for batch in batches:
                start = time.perf_counter()
                with precision.precision_scope(args.precision):
                    if args.compiled:
                        stats, parameters, _ = compiled_step(
                            config, batch, remat, args.loop, args.polyak)
                        # Arguments (weights, slots, batch) live through the step; the
                        # donated ones are reused for its outputs; temporaries on top.
                        state = stats.argument_size_in_bytes
                        kept = stats.temp_size_in_bytes + stats.output_size_in_bytes \
                            - stats.alias_size_in_bytes
                    else:
                        kept, parameters = saved_activations(config, batch, remat, args.loop)
                        state = (5 if args.polyak else 4) * 4 * parameters
                        if remat:
                            # The backward pass recomputes one step at a time: at most
                            # what a one-step-per-level Glow keeps comes on top.
                            one_step = dataclasses.replace(config, k_glow=1)
                            kept += saved_activations(one_step, batch, False, args.loop)[0]
                seconds = time.perf_counter() - start
                peak = state + kept
                peaks.append(peak)
                rows.append((size, levels, remat, batch, parameters, state, kept, peak))
                print(f"... {size}x{size} L={levels} remat={remat} batch {batch}: "
                      f"{peak / GIB:.2f} GiB ({seconds:.0f} s)", flush=True)
            fits.append((size, levels, remat, parameters, *fit_line(batches, peaks)))

    what = ("XLA's buffer assignment of the compiled step" if args.compiled
            else "the activations autodiff saves for the backward pass")
    print(f"K={args.k_glow}, width {args.hidden_channels}, {args.precision}, Adam"
          f"{' with Polyak averaging' if args.polyak else ''}, steps run as "
          f"{args.loop}; {what}; keras {keras.__version__}, jax {_device()}")
    print("| model | parameters | remat | batch | state GiB | activations GiB "
          "| planned peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for size, levels, remat, batch, parameters, state, kept, peak in rows:
        print(f"| {size}x{size}x3, L={levels} | {parameters / 1e6:.2f}M "
              f"| {'yes' if remat else 'no'} | {batch} | {state / GIB:.2f} "
              f"| {kept / GIB:.2f} | {peak / GIB:.2f} |")
    print()
    print("| model | remat | peak = state + batch x per image: state GiB | per image MiB "
          "| largest batch in 16 / 40 / 80 GiB |")
    print("|---|---|---|---|---|")
    for size, levels, remat, parameters, state, per_image in fits:
        fitting = " / ".join(str(max(0, int((memory * GIB - state) // per_image)))
                             for memory in (16, 40, 80))
        print(f"| {size}x{size}x3, L={levels} | {'yes' if remat else 'no'} "
              f"| {state / GIB:.2f} | {per_image / 2**20:.1f} | {fitting} |")


def _device():
    import jax

    device = jax.devices()[0]
    return f"{jax.__version__} on {device.platform} ({device.device_kind})"


if __name__ == "__main__":
    main()
