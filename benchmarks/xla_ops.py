"""Where JAX's compiled loss and gradients go, by kind of XLA op, for each form of a level's steps.

    KERAS_BACKEND=jax python -m benchmarks.xla_ops --image_size 32 --k_glow 8 \
        --hidden_channels 64 --batch_size 32

For each form (`unrolled`; `loop`, one loop keeping each step's
activations; `loop-remat`, one loop recomputing them; `loop-keep-hidden`,
one loop recomputing all but each coupling network's hidden convolution
output, at any width), it compiles `jax.value_and_grad` of the model's
training loss (no optimizer), times a call, and runs a few calls under
JAX's profiler. XLA's CPU runtime records one event per op it runs; the
table sums them by kind: an op's name without its number (`ynn_fusion`:
the matmuls and convolutions with what XLA fused into them;
`wrapped_broadcast`: buffers filled with one value;
`...dynamic-update-slice_fusion`: writes into a row of a loop's buffer).
Ops of both cores add up, so a row's ops can sum to more than its wall
time. `loop="auto"` runs `loop-remat` on JAX's CPU, or `loop-keep-hidden`
from a width of 256 (KEEP_HIDDEN_FROM_WIDTH). JAX only: nothing here
imports TensorFlow.
"""

import argparse
import collections
import contextlib
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.model_flags import add_model_flags

# (name, Glow keyword arguments). The last is "auto", made to keep the hidden
# output at any width by `keeping_hidden`.
FORMS = (("unrolled", {"loop": "unrolled"}), ("loop", {"loop": "loop"}),
         ("loop-remat", {"loop": "loop", "remat": True}),
         ("loop-keep-hidden", {"loop": "auto"}))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.xla_ops",
                                     description=__doc__.split("\n")[0])
    add = parser.add_argument
    add_model_flags(parser)
    add("--batch_size", type=int, default=16)
    add("--forms", default=",".join(name for name, _ in FORMS),
        help="comma-separated, of: " + ", ".join(name for name, _ in FORMS))
    add("--calls", type=int, default=3, help="timed calls, and calls profiled")
    add("--kinds", type=int, default=8, help="op kinds shown per form, the costliest")
    args = parser.parse_args(argv)
    known = dict(FORMS)
    for name in args.forms.split(","):
        if name not in known:
            parser.error(f"--forms: {name!r}: expected some of {', '.join(known)}.")
    return args


@contextlib.contextmanager
def keeping_hidden(form):
    """Within it, for the form `loop-keep-hidden`, `loop="auto"` keeps the hidden
    output at every width: FlowSteps.keeps_hidden reads KEEP_HIDDEN_FROM_WIDTH
    when the model is traced, which `compiled_gradient` does within it."""
    from glow_tf.layers import step

    saved = step.KEEP_HIDDEN_FROM_WIDTH
    if form == "loop-keep-hidden":
        step.KEEP_HIDDEN_FROM_WIDTH = 1
    try:
        yield
    finally:
        step.KEEP_HIDDEN_FROM_WIDTH = saved


def compiled_gradient(config, options, images):
    """(value_and_grad compiled, its arguments, compile seconds, scratch bytes)."""
    import jax
    import keras
    from keras import ops

    from glow_tf import Glow

    model = Glow(config, **options)
    model.initialize(images)
    variables = model.trainable_variables

    def loss(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return ops.mean(model(x))  # the training loss, dequantisation included

    arguments = ([v.value for v in variables], images)
    start = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(*arguments).compile()
    seconds = time.perf_counter() - start
    return compiled, arguments, seconds, compiled.memory_analysis().temp_size_in_bytes


def op_kinds(compiled, arguments, calls):
    """Milliseconds per call by kind of op, from JAX's profiler."""
    import jax

    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(calls):
                jax.block_until_ready(compiled(*arguments))
        (path,) = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    kinds = collections.Counter()
    for event in events:
        name = event.get("name", "")
        # Complete events of ops: not the runtime's own, JAX's Python or the loop itself.
        if event.get("ph") != "X" or name.startswith(("$", "end:", "while")) or \
                re.search(r"Thunk|PjRt|Pjit|Slinky|DevicePut|Allocate", name):
            continue
        kinds[re.sub(r"[._]?\d+$", "", name)] += event.get("dur", 0) / 1000.0 / calls
    return kinds


def timed(compiled, arguments, calls):
    import jax

    jax.block_until_ready(compiled(*arguments))
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*arguments))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv=None):
    args = parse_args(argv)
    if os.environ.get("KERAS_BACKEND") != "jax":
        print("benchmarks.xla_ops runs on JAX: set KERAS_BACKEND=jax.", file=sys.stderr)
        return 1
    from glow_tf.config import GlowConfig

    config = GlowConfig(image_shape=(args.image_size, args.image_size, args.channels),
                        k_glow=args.k_glow, l_glow=args.l_glow,
                        hidden_channels=args.hidden_channels,
                        # Not keras.utils.set_random_seed, which imports TensorFlow where it can.
                        seed=0)
    images = np.random.default_rng(0).integers(
        0, 256, (args.batch_size, *config.image_shape), dtype=np.uint8)
    print(f"Glow {'x'.join(map(str, config.image_shape))}, K={config.k_glow}, "
          f"L={config.l_glow}, width {config.hidden_channels}, batch {args.batch_size}: "
          "value_and_grad of the training loss")
    print("| form | compile s | call ms | scratch KiB | ops ms (sum) "
          "| costliest kinds of op, ms |")
    print("|---|---|---|---|---|---|")
    for name in args.forms.split(","):
        print(f"... {name}", file=sys.stderr, flush=True)
        with keeping_hidden(name):
            compiled, arguments, compile_s, scratch = compiled_gradient(
                config, dict(FORMS)[name], images)
        call_s = timed(compiled, arguments, args.calls)
        kinds = op_kinds(compiled, arguments, args.calls)
        costliest = ", ".join(f"{kind} {ms:.1f}" for kind, ms in kinds.most_common(args.kinds))
        print(f"| {name} | {compile_s:.1f} | {1000 * call_s:.1f} | {scratch / 2**10:,.0f} "
              f"| {sum(kinds.values()):.1f} | {costliest} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
