"""Benchmark: Glow's training step, test pass and sampling on the current Keras backend.

    python -m benchmarks.train_step --image_size 16 --k_glow 4 --l_glow 2 \\
        --hidden_channels 64 --batch_size 16,64 --steps 20

times, after warm-up, the full training step (forward, backward, optimizer
update) as users run it, through `Glow.compute_loss` and `fit()`, on
synthetic uint8 images; then the compiled functions that a training run's
test pass and summaries use: `Glow.encode_images` on a batch (encode) and
`Glow.sample` (decode). It prints one table row per (batch size,
precision): images/s, step ms, test-pass and sample ms, peak memory,
parameter count, and the warm-up: the first steps (tracing and compiling
the step) plus the first call of encode and of decode, which a run pays
once.

Like main.py, it sets TensorFlow's CPU runtime before TensorFlow runs
(glow_tf.cli.runtime: threads per op by --threads_per_op; without a GPU,
Grappler off, or its remapper alone for a model at least 256 wide).

Each row runs in its own process when there are several, so that XLA's
caches and the peak-memory counters (which only ever grow) belong to that
row alone. Peak memory is the accelerator's allocator peak (JAX
`memory_stats()`, TensorFlow `get_memory_info`) where there is one; on CPU it
is the row process's peak resident set size, labelled "RSS".

Nothing here imports TensorFlow unless the backend is TensorFlow, so it runs
with `KERAS_BACKEND=jax` on a machine without TensorFlow.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from glow_tf import precision as precision_lib
from glow_tf.cli import runtime
from glow_tf.config import COUPLINGS, OPTIMIZERS, PERMUTATIONS, THREADS_PER_OP, GlowConfig

try:
    from glow_tf.config import LOOPS
except ImportError:  # a glow_tf from before the loop, timed by benchmarks.paper_table
    LOOPS = ("auto",)

# Keras, and the backend behind it, start in main(), after the flags chose
# TensorFlow's runtime (glow_tf.cli.runtime), which must precede its first op.
keras = ops = Glow = None


def _start_keras(args):
    global keras, ops, Glow
    runtime.tune_tensorflow(args.threads_per_op, args.hidden_channels)
    import keras as keras_module

    keras, ops = keras_module, keras_module.ops
    if args.grappler != "tools" and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # "all": every pass that the tools turned off, on again.
        passes = _grappler_passes(tf.config.optimizer.get_experimental_options())
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": args.grappler == "off",
             **{name: True for name in passes if args.grappler == "all"}})
    from glow_tf.model import Glow as glow_class

    Glow = glow_class

MODES = ("fit", "train_on_batch")
JIT = {"auto": "auto", "true": True, "false": False}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_step",
        description="Times Glow's training step and sampling on the current "
        "Keras backend (KERAS_BACKEND), on synthetic uint8 images.",
    )
    add = parser.add_argument
    add("--image_size", type=int, default=32, help="height and width of the images")
    add("--channels", type=int, default=3, help="colour channels of the images")
    add("--k_glow", type=int, default=32, help="K, steps of flow per level")
    add("--l_glow", type=int, default=3, help="L, levels")
    add("--hidden_channels", type=int, default=512, help="width of the coupling networks")
    add("--coupling", default="affine", choices=COUPLINGS)
    add("--permutation", default="lu", choices=PERMUTATIONS)
    add("--batch_size", default="64",
        help="comma-separated batch sizes, one row each (e.g. 64,256)")
    add("--precision", default="float32",
        help="comma-separated precisions, one row each: "
        + ", ".join(precision_lib.PRECISIONS))
    add("--remat", action="store_true",
        help="recompute each step of flow in the backward pass (Glow(remat=True))")
    add("--loop", default="auto", choices=LOOPS,
        help="how each level runs its K steps (Glow(loop=...)): one loop over their "
        "stacked weights, unrolled, or auto (the faster on this backend and device)")
    add("--jit", default="auto", choices=tuple(JIT),
        help="compile(jit_compile=...): XLA on TensorFlow; 'auto' is Keras' "
        "default (JAX: on; TensorFlow: on with a GPU, off on CPU)")
    add("--steps_per_execution", type=int, default=1,
        help="compile(steps_per_execution=...): training steps per compiled call")
    add("--threads_per_op", default="auto", choices=THREADS_PER_OP,
        help="TensorFlow CPU threads per op, as main.py's --threads_per_op (auto: one "
        "for coupling networks at most 64 wide)")
    add("--grappler", default="tools", choices=("tools", "off", "all"),
        help="TensorFlow's graph optimiser: as the tools set it (on a CPU off, or its "
        "remapper alone from a width of 256: glow_tf.cli.runtime), off, or every pass")
    add("--mode", default="fit", choices=MODES,
        help="fit: one fit() over the warm-up and every repeat's --steps batches, "
        "timed between them by a callback (how a run trains); train_on_batch: one call "
        "per step")
    add("--optimizer", default="adam", choices=OPTIMIZERS)
    add("--steps", type=int, default=20, help="timed training steps per repeat")
    add("--warmup", type=int, default=3, help="untimed training steps first (compilation)")
    add("--repeats", type=int, default=3, help="timed repeats; the table shows the median")
    add("--sample_batch", type=int, default=16,
        help="images per sample() call (the summaries' grid: 16); 0 skips encode and "
        "sampling")
    add("--temperature", type=float, default=0.7, help="sampling temperature")
    add("--seed", type=int, default=0)
    add("--isolate", choices=("auto", "yes", "no"), default="auto",
        help="run each row in its own process (auto: when there are several rows)")
    add("--json", default=None, help="also write the rows to this JSON file")
    add("--row_output", default=None, help=argparse.SUPPRESS)  # a child row's result
    args = parser.parse_args(argv)

    try:
        args.batch_sizes = [int(b) for b in args.batch_size.split(",")]
    except ValueError:
        parser.error(f"--batch_size={args.batch_size!r}: expected integers separated by commas.")
    args.precisions = args.precision.split(",")
    for p in args.precisions:
        if p not in precision_lib.PRECISIONS:
            parser.error(f"--precision={p!r}: expected one of "
                         f"{', '.join(precision_lib.PRECISIONS)}.")
    for name in ("steps", "repeats", "steps_per_execution"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)}: expected an integer >= 1.")
    if args.warmup < 1:
        parser.error(f"--warmup={args.warmup}: expected an integer >= 1 (the first "
                     "step compiles, and must not be timed).")
    if any(b < 1 for b in args.batch_sizes):
        parser.error(f"--batch_size={args.batch_size!r}: expected sizes >= 1.")
    if args.sample_batch < 0:
        parser.error(f"--sample_batch={args.sample_batch}: expected >= 0.")
    try:
        args.config = GlowConfig(
            image_shape=(args.image_size, args.image_size, args.channels),
            k_glow=args.k_glow, l_glow=args.l_glow, hidden_channels=args.hidden_channels,
            coupling=args.coupling, permutation=args.permutation, seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    return args


# ---- what the machine reports ----

def device_name():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.device_kind} (jax {device.platform})"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", "GPU")
    return f"CPU {platform.machine()}, {os.cpu_count()} cores"


def reset_peak_memory():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory():
    """(bytes, what was measured): the accelerator's peak, else process peak RSS."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats()
        if stats and "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"], "device"
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"], "device"
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "RSS"


def parameter_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def make_optimizer(name, learning_rate):
    """The optimizer main.py trains with: on TensorFlow, one fused update kernel per weight."""
    if keras.backend.backend() == "tensorflow":
        from glow_tf.tf.optimizers import OPTIMIZERS as fused

        return fused[name](learning_rate)
    return {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}[name](learning_rate)


def block_until_ready(model):
    """Waits for queued device work (JAX and GPUs run asynchronously)."""
    ops.convert_to_numpy(model.trainable_variables[-1])


# ---- one row ----

def _round_up(n, multiple):
    return -(-n // multiple) * multiple


def run_row(args, batch, precision):
    """Times training and sampling for one (batch, precision); returns a dict."""
    # Not keras.utils.set_random_seed: it imports TensorFlow where installed.
    # The weights follow GlowConfig.seed, the images the generator below.
    reset_peak_memory()
    spe = args.steps_per_execution
    steps, warmup = _round_up(args.steps, spe), _round_up(args.warmup, spe)
    rng = np.random.default_rng(args.seed)
    # fit() goes through the warm-up and every repeat once; train_on_batch reuses the first batch.
    batches = max(warmup, spe) + steps * args.repeats if args.mode == "fit" else max(steps, warmup)
    images = rng.integers(0, 256, (batch * batches, *args.config.image_shape), dtype=np.uint8)

    with precision_lib.precision_scope(precision):
        # "auto" is Glow's default; not passing it lets --baseline's rows
        # (benchmarks.paper_table) time a glow_tf from before the argument.
        loop = {} if args.loop == "auto" else {"loop": args.loop}
        model = Glow(args.config, remat=args.remat, **loop)
    model.initialize(images[: min(len(images), 256)])
    optimizer = precision_lib.with_loss_scaling(make_optimizer(args.optimizer, 1e-4), precision)
    model.compile(optimizer, jit_compile=JIT[args.jit], steps_per_execution=spe)
    # As glow_tf.tf.training.build_and_fit does: a TensorFlow step whose first
    # trace creates the optimizer's slots is traced twice.
    model.optimizer.build(model.trainable_variables)

    if args.mode == "fit":
        first_step_s, warmup_s, step_ms, cpu_ms, loss = _time_one_fit(
            model, images, batch, spe, warmup, steps, args.repeats)
    else:
        first_step_s, warmup_s, step_ms, cpu_ms, loss = _time_train_on_batch(
            model, images[:batch], spe, warmup, steps, args.repeats)
    memory, memory_kind = peak_memory()

    # What a training run's test pass and summaries compile (glow_tf.compiled):
    # encode of a batch of images, decode of the sampling latents.
    sample_batch = args.sample_batch
    encode_warmup_s = decode_warmup_s = 0.0
    encode_ms, sample_ms = [], []
    if sample_batch:
        def encode(seed):
            return ops.convert_to_numpy(model.encode_images(images[:batch], seed=seed)[2])

        def sample(seed):
            return ops.convert_to_numpy(model.sample(sample_batch, args.temperature, seed=seed))

        encode_warmup_s, encode_ms = _first_and_timed(encode, args.repeats)
        decode_warmup_s, sample_ms = _first_and_timed(sample, args.repeats)

    median = statistics.median(step_ms)
    # What the first calls took beyond a call of a compiled function: tracing
    # and compiling the step, encode and decode.
    compile_s = (first_step_s - spe * median / 1000.0
                 + encode_warmup_s - _median_s(encode_ms)
                 + decode_warmup_s - _median_s(sample_ms))
    return {
        "backend": keras.backend.backend(),
        "device": device_name(),
        "config": args.config.to_dict(),
        "batch": batch,
        "precision": precision,
        "remat": args.remat,
        "loop": _looped(model),
        "recomputes": _recomputes(model),
        "jit": bool(model.jit_compile),
        "steps_per_execution": spe,
        "mode": args.mode,
        "optimizer": args.optimizer,
        "steps": steps,
        "warmup_s": first_step_s + encode_warmup_s + decode_warmup_s,
        "step_warmup_s": warmup_s,
        "first_step_s": first_step_s,
        "compile_s": compile_s,
        "encode_warmup_s": encode_warmup_s,
        "decode_warmup_s": decode_warmup_s,
        "step_ms": step_ms,
        "step_ms_median": median,
        "cpu_ms": cpu_ms,
        "cpu_ms_median": statistics.median(cpu_ms),
        "images_per_s": 1000.0 * batch / median,
        "peak_memory_bytes": int(memory),
        "peak_memory_kind": memory_kind,
        "parameters": parameter_count(model),
        "loss_after": float(loss),
        "encode_ms": encode_ms,
        "encode_ms_median": statistics.median(encode_ms) if encode_ms else None,
        "sample_batch": sample_batch,
        "sample_ms": sample_ms,
        "sample_ms_median": statistics.median(sample_ms) if sample_ms else None,
    }


def _time_one_fit(model, images, batch, spe, warmup, steps, repeats):
    """The steps of one fit() over the warm-up and every timed batch, as a run trains.

    A callback notes the wall and CPU clocks at the end of the first step,
    of the warm-up and of each repeat. Not one fit() per repeat: TensorFlow
    ran the paper-width step on one core in some fit() calls of a step or
    two, and on both cores through the steps of a longer one
    (docs/performance.md), and a training run's epoch is one long fit().
    """
    warmup = max(warmup, spe)  # the first step is part of the warm-up
    ends = [spe, warmup] + [warmup + steps * (r + 1) for r in range(repeats)]
    clocks = {}
    in_order = threading.Condition()

    class Clock(keras.callbacks.Callback):
        # Keras calls a callback that says so with the step's logs once they
        # are numbers (so once the step is done), from threads of its own
        # where the backend allows (JAX): fit() runs as it would without
        # one, each step dispatched while the one before it computes.
        async_safe = True

        def on_train_batch_end(self, batch_index, logs=None):
            # batch_index is the last step of the call (steps_per_execution).
            end = batch_index + 1
            if end not in ends:
                return
            # Those threads may reach here out of order (two short steps
            # done at once, one thread descheduled): each end takes its
            # clock after the ends before it, which it cannot precede.
            with in_order:
                in_order.wait_for(lambda: all(e in clocks for e in ends if e < end))
                clocks[end] = (time.perf_counter(), time.process_time())
                in_order.notify_all()

    start = time.perf_counter()
    history = model.fit(images[: batch * ends[-1]], batch_size=batch, epochs=1, verbose=0,
                        shuffle=False, callbacks=[Clock()])
    clocks = [clocks[end] for end in ends]
    first_step_s, warmup_s = clocks[0][0] - start, clocks[1][0] - start
    step_ms, cpu_ms = [], []
    for (wall_0, cpu_0), (wall_1, cpu_1) in zip(clocks[1:], clocks[2:]):
        step_ms.append(1000.0 * (wall_1 - wall_0) / steps)
        cpu_ms.append(1000.0 * (cpu_1 - cpu_0) / steps)
    return first_step_s, warmup_s, step_ms, cpu_ms, history.history["loss"][-1]


def _time_train_on_batch(model, one_batch, spe, warmup, steps, repeats):
    """As _time_one_fit, with one train_on_batch call per step."""
    def train(n):
        for _ in range(n):
            loss = model.train_on_batch(one_batch)
        return loss

    # The first call traces and compiles; it runs steps_per_execution steps.
    start = time.perf_counter()
    loss = train(spe)
    block_until_ready(model)
    first_step_s = time.perf_counter() - start
    if warmup > spe:
        loss = train(warmup - spe)
    block_until_ready(model)
    warmup_s = time.perf_counter() - start
    step_ms, cpu_ms = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = train(steps)
        block_until_ready(model)
        step_ms.append(1000.0 * (time.perf_counter() - start) / steps)
        cpu_ms.append(1000.0 * (time.process_time() - start_cpu) / steps)
    return first_step_s, warmup_s, step_ms, cpu_ms, loss


def _first_level_steps(model):
    """The first level's steps of flow (None for a model without levels)."""
    levels = getattr(getattr(model, "flow", None), "levels", None)
    return levels[0].bijectors[1] if levels else None


def _looped(model):
    """Whether the model runs each level's steps as one loop (False for a glow_tf
    from before the loop)."""
    return bool(getattr(_first_level_steps(model), "looped", False))


def _recomputes(model):
    """Whether the model's backward pass recomputes each step, asked (--remat) or chosen by
    `loop="auto"` (False for a glow_tf from before the choice)."""
    steps = _first_level_steps(model)
    return bool(getattr(steps, "recomputes", getattr(steps, "remat", False)))


def _median_s(ms):
    return statistics.median(ms) / 1000.0 if ms else 0.0


def _first_and_timed(function, repeats):
    """(seconds of the first call, which traces and compiles; ms of `repeats` more calls)."""
    start = time.perf_counter()
    function(0)
    first = time.perf_counter() - start
    timed = []
    for repeat in range(repeats):
        start = time.perf_counter()
        function(repeat + 1)
        timed.append(1000.0 * (time.perf_counter() - start))
    return first, timed


def run_row_isolated(argv, batch, precision):
    """`run_row` in a fresh process, so that its memory peak is its own."""
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        child = [sys.executable, "-m", "benchmarks.train_step", *argv,
                 f"--batch_size={batch}", f"--precision={precision}",
                 "--isolate=no", f"--row_output={path}", "--json="]
        result = subprocess.run(child, stdout=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(
                f"benchmark row batch={batch} precision={precision} failed "
                f"(exit status {result.returncode}); its error is printed above."
            )
        with open(path) as f:
            return json.load(f)
    finally:
        os.remove(path)


# ---- output ----

def _gib(n):
    return f"{n / 2**30:.2f} GiB"


def _remat_cell(row):
    """yes: --remat; auto: recomputed by `loop="auto"` without it; no."""
    if row["remat"]:
        return "yes"
    return "auto" if row.get("recomputes") else "no"


def format_table(rows):
    header = ("| backend | device | batch | precision | remat | loop | jit | spe | mode "
              "| step ms (median; min-max) | images/s | host CPU ms/step "
              "| encode ms/batch | sample ms (n) | peak memory | parameters "
              "| warm-up s (first step + encode + decode) | of which compiling s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        spread = f"{min(r['step_ms']):.1f}-{max(r['step_ms']):.1f}"
        encode = f"{r['encode_ms_median']:.1f}" if r["encode_ms_median"] is not None else "-"
        sample = (f"{r['sample_ms_median']:.1f} ({r['sample_batch']})"
                  if r["sample_ms_median"] is not None else "-")
        memory = _gib(r["peak_memory_bytes"])
        if r["peak_memory_kind"] == "RSS":
            memory += " RSS (process peak)"
        warmup = (f"{r['warmup_s']:.1f} ({r['first_step_s']:.1f} + {r['encode_warmup_s']:.1f} "
                  f"+ {r['decode_warmup_s']:.1f})")
        lines.append(
            f"| {r['backend']} | {r['device']} | {r['batch']} | {r['precision']} "
            f"| {_remat_cell(r)} | {'yes' if r['loop'] else 'no'} "
            f"| {'yes' if r['jit'] else 'no'} "
            f"| {r['steps_per_execution']} | {r['mode']} "
            f"| {r['step_ms_median']:.1f}; {spread} | {r['images_per_s']:.1f} "
            f"| {r['cpu_ms_median']:.1f} | {encode} | {sample} "
            f"| {memory} | {r['parameters']:,} | {warmup} | {r['compile_s']:.1f} |"
        )
    return "\n".join(lines)


def describe(args):
    c = args.config
    height, width, channels = c.image_shape
    return (
        f"Glow {height}x{width}x{channels}, K={c.k_glow}, L={c.l_glow}, width "
        f"{c.hidden_channels}, {c.coupling} coupling, {c.permutation} permutation; "
        f"{args.optimizer}, {args.steps} timed steps x {args.repeats} repeats after "
        f"{args.warmup} warm-up; keras {keras.__version__}, backend "
        f"{keras.backend.backend()}{_tensorflow_runtime()}"
    )


def _tensorflow_runtime():
    """', oneDNN off, Grappler off' and the like: how TensorFlow runs, if it is the backend."""
    if keras.backend.backend() != "tensorflow":
        return ""
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    options = tf.config.optimizer.get_experimental_options()
    passes = _grappler_passes(options)
    grappler = ("off" if options.get("disable_meta_optimizer") else
                "on" if all(passes.values()) else
                " + ".join(name for name, on in passes.items() if on) or "no pass")
    return (f", threads per op {threads}, oneDNN {'on' if onednn else 'off'}, "
            f"Grappler {grappler}")


def _grappler_passes(options):
    """{pass: on} for Grappler's passes set in TensorFlow's `options` (the others run
    by default).

    From TensorFlow's options, not glow_tf's: the benchmark also times
    glow_tf checkouts from before glow_tf.cli.runtime named them.
    """
    return {name: bool(on) for name, on in options.items()
            if name not in ("disable_meta_optimizer", "disable_model_pruning", "min_graph_nodes")}


def _write_json(path, value):
    """Writes atomically: a temporary file beside `path`, then os.replace."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    _start_keras(args)
    if args.row_output:
        _write_json(args.row_output, run_row(args, args.batch_sizes[0], args.precisions[0]))
        return 0
    combos = [(b, p) for p in args.precisions for b in args.batch_sizes]
    isolate = args.isolate == "yes" or (args.isolate == "auto" and len(combos) > 1)
    rows = []
    for batch, precision in combos:
        print(f"... batch {batch}, {precision}", file=sys.stderr, flush=True)
        if isolate:
            rows.append(run_row_isolated(argv, batch, precision))
        else:
            rows.append(run_row(args, batch, precision))
    print(describe(args))
    print(format_table(rows))
    if args.json:
        _write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
