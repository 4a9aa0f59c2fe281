"""Where a TensorFlow training step's time goes, op type by op type.

    python -m benchmarks.profile_ops --image_size 8 --channels 1 --k_glow 32 \\
        --l_glow 2 --hidden_channels 16 --batch_size 64

Compiles the training step as `fit` does (the same `Glow.train_step`, the
optimizer main.py uses, TensorFlow's runtime set as the tools set it:
glow_tf.cli.runtime), runs it a few times, then records --steps steps with
TensorFlow's profiler and prints, per op type, how often it ran per step and
its summed kernel time per step, beside the wall time of the step and the
time of the step's function as a whole. What the op types do not add up
to is the executor's own cost of scheduling some 12,000 ops a step. Also
prints the graph's node count. Compare the rows of one run with each
other: the machine's load moves them all.
"""

import argparse
import collections
import glob
import shutil
import tempfile
import time

import numpy as np

from benchmarks.model_flags import add_model_flags
from glow_tf.cli import runtime
from glow_tf.config import LOOPS, GlowConfig, THREADS_PER_OP
from glow_tf.precision import PRECISIONS, precision_scope


# The executor's own trace events, around the ops' (not op types).
_EXECUTOR_EVENTS = ("Process", "Run")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_ops")
    add = parser.add_argument
    # The digits preset's model.
    add_model_flags(parser, image_size=8, channels=1, l_glow=2, hidden_channels=16)
    add("--batch_size", type=int, default=64)
    add("--optimizer", default="adam", choices=("adam", "adamax"))
    add("--precision", default="float32", choices=PRECISIONS,
        help="the coupling networks' precision (glow_tf.precision)")
    add("--threads_per_op", default="auto", choices=THREADS_PER_OP)
    add("--loop", default="auto", choices=LOOPS,
        help="how each level runs its K steps (Glow's loop argument)")
    add("--steps", type=int, default=10, help="profiled steps")
    add("--top", type=int, default=25, help="op types to print")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    runtime.tune_tensorflow(args.threads_per_op, args.hidden_channels)
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from glow_tf import Glow
    from glow_tf.tf.optimizers import OPTIMIZERS

    config = GlowConfig(image_shape=(args.image_size, args.image_size, args.channels),
                        k_glow=args.k_glow, l_glow=args.l_glow,
                        hidden_channels=args.hidden_channels, seed=0)
    images = np.random.default_rng(0).integers(
        0, 256, (max(256, args.batch_size), *config.image_shape), dtype=np.uint8)
    with precision_scope(args.precision):
        model = Glow(config, loop=args.loop)
    model.initialize(images[:256])
    model.compile(OPTIMIZERS[args.optimizer](1e-5))
    model.optimizer.build(model.trainable_variables)
    step = tf.function(model.train_step).get_concrete_function(
        tf.TensorSpec((args.batch_size, *config.image_shape), tf.uint8))
    nodes = collections.Counter(n.op for n in step.graph.as_graph_def().node)
    batch = tf.constant(images[: args.batch_size])
    for _ in range(5):
        step(batch)

    folder = tempfile.mkdtemp(prefix="profile_ops_")
    try:
        tf.profiler.experimental.start(folder)
        start = time.perf_counter()
        for _ in range(args.steps):
            logs = step(batch)
        float(logs["loss"])
        wall_ms = 1000.0 * (time.perf_counter() - start) / args.steps
        tf.profiler.experimental.stop()
        (path,) = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    runs, ms, function_ms = collections.Counter(), collections.Counter(), 0.0
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            for event in line.events:
                name = names[event.metadata_id].name
                kind = name.rsplit(":", 1)[-1].strip()  # "node name:OpType"
                if kind.startswith("__inference_train_step"):
                    function_ms += event.duration_ps / 1e9
                elif ":" in name and not name.startswith("$") and kind not in _EXECUTOR_EVENTS:
                    runs[kind] += 1
                    ms[kind] += event.duration_ps / 1e9
    n = args.steps
    print(f"Glow {args.image_size}x{args.image_size}x{args.channels}, K={args.k_glow}, "
          f"L={args.l_glow}, width {args.hidden_channels}, batch {args.batch_size}, "
          f"{args.precision}, loop {args.loop}; "
          f"TensorFlow {tf.__version__}, threads per op "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'}")
    print(f"graph: {sum(nodes.values()):,} nodes, of them {nodes['Const']:,} constants and "
          f"{nodes['Placeholder']:,} captured variables")
    print(f"step: {wall_ms:.1f} ms wall (profiled), {function_ms / n:.1f} ms in the step's "
          f"function; {sum(runs.values()) / n:,.0f} ops ran, {sum(ms.values()) / n:.1f} ms "
          "of kernel time (on two cores)")
    print("| op type | runs per step | ms per step | us per run |")
    print("|---|---|---|---|")
    for kind, total in ms.most_common(args.top):
        print(f"| {kind} | {runs[kind] / n:.0f} | {total / n:.2f} | "
              f"{1000.0 * total / runs[kind]:.1f} |")


if __name__ == "__main__":
    main()
