"""The performance page's CPU table in one sitting: this checkout against another, both backends.

    python -m benchmarks.paper_table --baseline ../glow_tf-before --json table.json

`--baseline` is another checkout of glow_tf (the code to compare with).
Every row is one process of this checkout's `benchmarks/train_step.py`,
timing the baseline's glow_tf or this one's (so both are timed the same
way), on TensorFlow or JAX, one after the other, baseline and new side by
side:

- the paper's CIFAR-10 model (32x32x3, K=32, L=3, width 512) at batch 16:
  step time, host CPU time per step, peak resident memory, warm-up (the
  first training step plus the first encode and decode) and the part of it
  that is tracing and compiling (the warm-up less one call of each);
  this checkout also with --remat; on TensorFlow this checkout also with
  its steps unrolled (which `loop="auto"` runs as one loop at this
  width), and both in bfloat16 (JAX's CPU backend has no fast bfloat16
  matmul);
- the digits preset (8x8x1, K=32, L=2, width 16, batch 64);
- a small photo model (32x32x3, K=8, L=3, width 64, batch 32);

then this checkout's memory plan (benchmarks/memory_plan.py, JAX). It
prints the machine's load average before and after each row: other
processes on the machine slow every row, so compare rows run close
together, as ratios. At the paper's size a row takes minutes; the whole
table about an hour on two cores.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PAPER = ["--batch_size=16", "--warmup=1", "--steps=1", "--repeats=3"]
DIGITS = ["--image_size=8", "--channels=1", "--k_glow=32", "--l_glow=2",
          "--hidden_channels=16", "--batch_size=64", "--steps=50", "--warmup=3", "--repeats=3"]
PHOTO = ["--image_size=32", "--k_glow=8", "--l_glow=3", "--hidden_channels=64",
         "--batch_size=32", "--steps=10", "--warmup=2", "--repeats=3"]
# More rows of a model: (flags, the code they time, the backends they run on).
PAPER_MORE = ((["--remat"], ("new",), ("tensorflow", "jax")),
              (["--loop=unrolled"], ("new",), ("tensorflow",)),
              (["--precision=bfloat16"], ("before", "new"), ("tensorflow",)))
# (model, flags, more rows)
MODELS = (("paper, batch 16", PAPER, PAPER_MORE), ("digits preset", DIGITS, ()),
          ("photo, K=8 width 64, batch 32", PHOTO, ()))
BACKENDS = ("tensorflow", "jax")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_table",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True,
                        help="root of the glow_tf checkout to compare with")
    parser.add_argument("--models", default="paper,digits,photo",
                        help="comma-separated: paper, digits, photo")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated: tensorflow, jax")
    parser.add_argument("--no_memory_plan", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    for backend in args.backends.split(","):
        if backend not in BACKENDS:
            parser.error(f"--backends: {backend!r}: expected tensorflow or jax.")
    if not os.path.isfile(os.path.join(args.baseline, "glow_tf", "__init__.py")):
        parser.error(f"--baseline={args.baseline!r}: expected the root of a glow_tf checkout "
                     "(with glow_tf/__init__.py).")
    return args


def run_row(root, backend, flags):
    """This checkout's train_step timing the glow_tf of `root`; its JSON row, with the load
    around it."""
    with tempfile.TemporaryDirectory() as folder:
        # The benchmark alone in a package of its own, so that `glow_tf` comes from `root`.
        os.mkdir(os.path.join(folder, "benchmarks"))
        open(os.path.join(folder, "benchmarks", "__init__.py"), "w").close()
        shutil.copy(os.path.join(ROOT, "benchmarks", "train_step.py"),
                    os.path.join(folder, "benchmarks"))
        path = os.path.join(folder, "row.json")
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": root}
        load_before = os.getloadavg()[0]
        result = subprocess.run([sys.executable, "-m", "benchmarks.train_step", *flags,
                                 f"--json={path}"], cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"train_step {' '.join(flags)} on {backend} timing {root} "
                               "failed:\n" + result.stderr[-3000:])
        with open(path) as f:
            (row,) = json.load(f)
        row["load"] = (load_before, os.getloadavg()[0])
        return row


def warm_up(row):
    """(first step + encode + decode seconds, of which tracing and compiling)."""
    first = row["step_warmup_s"]  # --warmup=1 where this matters: the first step alone
    total = first + row["encode_warmup_s"] + row["decode_warmup_s"]
    once = (row["step_ms_median"] + (row["encode_ms_median"] or 0.0)
            + (row["sample_ms_median"] or 0.0)) / 1000.0
    return total, total - once


def format_row(name, code, backend, flags, row):
    total, compiling = warm_up(row)
    step = row["step_ms_median"] / 1000.0
    command = ("" if backend == "tensorflow" else "KERAS_BACKEND=jax ") \
        + "python -m benchmarks.train_step " + " ".join(flags)
    return (f"| {name} | {code} | {backend} | `{command}` "
            f"| {step:.3f}; {min(row['step_ms']) / 1000:.3f}-{max(row['step_ms']) / 1000:.3f} "
            f"| {row['cpu_ms_median'] / 1000:.3f} | {row['cpu_ms_median'] / row['step_ms_median']:.2f} "
            f"| {row['peak_memory_bytes'] / 2**30:.2f} | {total:.1f} | {compiling:.1f} "
            f"| {row['load'][0]:.1f}, {row['load'][1]:.1f} |")


def main(argv=None):
    args = parse_args(argv)
    wanted = args.models.split(",")
    baseline = os.path.abspath(args.baseline)
    print(f"# started {time.strftime('%Y-%m-%d %H:%M')}, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} cores",
          flush=True)
    header = ("| model | code | backend | command | step s (median; min-max) "
              "| host CPU s/step | cores busy | peak RSS GiB | warm-up s | of which compiling s "
              "| load before, after |")
    lines, rows, ratios = [header, "|" + "---|" * (header.count("|") - 1)], [], []
    roots = {"before": baseline, "new": ROOT}
    for name, flags, more_rows in MODELS:
        if name.split(",")[0].split()[0] not in wanted:
            continue
        for backend in args.backends.split(","):
            variants = [("before", []), ("new", [])] + [
                (code, more) for more, codes, backends in more_rows if backend in backends
                for code in codes]
            for code, more in variants:
                root = roots[code]
                row_flags = [*flags, *more]
                print(f"... {name}, {code}, {backend} {' '.join(more)}", file=sys.stderr,
                      flush=True)
                row = run_row(root, backend, row_flags)
                label = code + (" " + " ".join(more) if more else "")
                lines.append(format_row(name, label, backend, row_flags, row))
                print(lines[-1], flush=True)
                rows.append(dict(row, model=name, code=label, flags=row_flags))
                if label == "before":
                    before = row
                else:  # each against before's float32 row, the first of the backend
                    ratios.append(
                        f"- {name}, {backend}, {label}: step "
                        f"{row['step_ms_median'] / before['step_ms_median']:.2f}x, peak RSS "
                        f"{row['peak_memory_bytes'] / before['peak_memory_bytes']:.2f}x, "
                        f"warm-up {warm_up(row)[0] / warm_up(before)[0]:.2f}x of before")
    print()
    print("\n".join(lines))
    print()
    print("\n".join(ratios))
    if not args.no_memory_plan:
        print()
        print("`KERAS_BACKEND=jax python -m benchmarks.memory_plan`:", flush=True)
        subprocess.run([sys.executable, "-m", "benchmarks.memory_plan"], cwd=ROOT,
                       env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT},
                       check=True)
    print(f"# ended {time.strftime('%Y-%m-%d %H:%M')}, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
