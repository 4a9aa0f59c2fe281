"""The GPU table: the paper's CIFAR-10 model trained on one accelerator, on JAX.

    KERAS_BACKEND=jax python -m benchmarks.gpu_table --json gpu.json

Five rows, each in its own process (benchmarks/train_step.py's rows, so
each peak memory is the row's own): batch 64 and 256 in float32 and
bfloat16, and batch 256 with --remat. Each gives images/s, the step time,
the accelerator's peak memory and the warm-up (the first training step,
encode and decode: what a run pays once), beside a PyTorch Glow's figures
on an H100 for the same model. Sized to finish within 8 minutes on one
H100 (about a minute a row); --steps and --repeats trade time for spread.

It imports nothing of TensorFlow, so it runs where only JAX and Keras are
installed. The model flags exist so that a test can run the table small
on a CPU.
"""

import argparse
import json
import os
import sys
import time

from benchmarks import train_step
from benchmarks.model_flags import add_model_flags

# A PyTorch Glow (eager, same architecture, Adam) on one H100: images/s at
# batch 64 and 256, and its peak memory, as the performance page cites them.
PYTORCH_H100 = {64: "265", 256: "771"}
PYTORCH_H100_PEAK_GIB = 19.2

# (batch, precision, remat) of each row.
ROWS = ((64, "float32", False), (256, "float32", False), (64, "bfloat16", False),
        (256, "bfloat16", False), (256, "float32", True))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_table",
        description="The paper's CIFAR-10 Glow at batch 64 and 256, float32 and bfloat16, "
        "and --remat at 256, on JAX: images/s, peak memory, warm-up.")
    add = parser.add_argument
    add_model_flags(parser)
    add("--batch_sizes", default="64,256",
        help="the two batch sizes (small, large); --remat runs at the large one")
    add("--steps", type=int, default=5, help="timed steps per repeat")
    add("--warmup", type=int, default=2, help="untimed steps first, the first compiles")
    add("--repeats", type=int, default=3)
    add("--json", default=None, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def rows_of(args):
    small, large = (int(b) for b in args.batch_sizes.split(","))
    sizes = {64: small, 256: large}
    return [(sizes[batch], precision, remat) for batch, precision, remat in ROWS]


def row_argv(args):
    return [f"--image_size={args.image_size}", f"--channels={args.channels}",
            f"--k_glow={args.k_glow}", f"--l_glow={args.l_glow}",
            f"--hidden_channels={args.hidden_channels}", f"--steps={args.steps}",
            f"--warmup={args.warmup}", f"--repeats={args.repeats}"]


def format_table(results, paper_size):
    header = ("| batch | precision | remat | images/s | step ms (median; min-max) "
              "| peak memory GiB | warm-up s (first step + encode + decode) "
              "| PyTorch Glow on an H100, images/s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for (batch, precision, remat), r in results:
        reference = PYTORCH_H100.get(batch, "-") if paper_size and precision == "float32" \
            and not remat else "-"
        memory = f"{r['peak_memory_bytes'] / 2**30:.2f}"
        if r["peak_memory_kind"] == "RSS":
            memory += " (RSS)"
        lines.append(
            f"| {batch} | {precision} | {'yes' if remat else 'no'} | {r['images_per_s']:.1f} "
            f"| {r['step_ms_median']:.1f}; {min(r['step_ms']):.1f}-{max(r['step_ms']):.1f} "
            f"| {memory} | {r['warmup_s']:.1f} ({r['first_step_s']:.1f} + "
            f"{r['encode_warmup_s']:.1f} + {r['decode_warmup_s']:.1f}) | {reference} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.environ.get("KERAS_BACKEND") != "jax":
        print("benchmarks.gpu_table runs on JAX: set KERAS_BACKEND=jax.", file=sys.stderr)
        return 1
    start = time.perf_counter()
    results = []
    for batch, precision, remat in rows_of(args):
        print(f"... batch {batch}, {precision}{', remat' if remat else ''}", file=sys.stderr,
              flush=True)
        argv = row_argv(args) + (["--remat"] if remat else [])
        results.append(((batch, precision, remat),
                        train_step.run_row_isolated(argv, batch, precision)))
    paper_size = (args.image_size, args.channels, args.k_glow, args.l_glow,
                  args.hidden_channels) == (32, 3, 32, 3, 512)
    first = results[0][1]
    config = first["config"]
    print(f"Glow {'x'.join(str(n) for n in config['image_shape'])}, K={config['k_glow']}, "
          f"L={config['l_glow']}, width {config['hidden_channels']}, Adam; "
          f"{first['device']}; {args.steps} timed steps x {args.repeats} repeats after "
          f"{args.warmup} warm-up; PyTorch Glow's peak memory: {PYTORCH_H100_PEAK_GIB} GiB; "
          f"the table took {time.perf_counter() - start:.0f} s")
    print(format_table(results, paper_size))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(r, row=list(key)) for key, r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
