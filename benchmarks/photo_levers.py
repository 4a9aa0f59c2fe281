"""What each training lever does on 32x32 RGB photos: one change at a time from a base recipe.

    python -m benchmarks.photo_levers DIR                          # every row below
    python -m benchmarks.photo_levers DIR --rows base,lr=2e-3 --epochs 2
    python -m benchmarks.photo_levers DIR --rows base --base="--k_glow=16" --epochs 1

DIR is a folder of images that `main.py --dataset folder --data_dir DIR`
reads (class folders of photos, say); nothing here depends on which.

Each row runs `python main.py --dataset folder --data_dir DIR <base flags>
<row flags> <--flags>` in a fresh run folder, one row after another, in this
process's backend (KERAS_BACKEND, or --backend among the flags), and prints
the final and best held-out bits/dim, the last epoch's training bits/dim,
the steps and the wall clock of the whole command (finding and decoding the
images, building and initialising the model, compiling the step, every
epoch's test pass and the final one). Compare rows at equal steps: the
wall clock of a machine shared with other work is only an upper bound.

The base recipe is a small model with a schedule for minutes on a CPU, not
the paper's days on GPUs: a short warmup, a higher learning rate, and a
Polyak average over a fraction of an epoch. Each row changes one lever of
it; later flags beat earlier ones, so a row overrides the base and
--flags overrides both.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE = [
    "--k_glow=8", "--l_glow=3", "--hidden_channels=64", "--coupling=affine",
    "--batch_size=32", "--lr=4e-3", "--warmup=0.2", "--polyak", "--polyak_epochs=0.25",
    "--noaugment", "--n_bits=8", "--img_size=32", "--channel_size=3",
]

# One lever each. Every row names its own value, so that it means the same
# whatever the base says.
ROWS = {
    "base": [],
    # The defaults' schedule (the paper's, made for days on GPUs).
    "paper_schedule": ["--lr=1e-3", "--warmup=10", "--polyak_epochs=1"],
    "seed=1": ["--seed=1"],
    "lr=1e-3": ["--lr=1e-3"],
    "lr=2e-3": ["--lr=2e-3"],
    "lr=4e-3": ["--lr=4e-3"],
    "lr=8e-3": ["--lr=8e-3"],
    "warmup=0": ["--warmup=0"],
    "warmup=0.05": ["--warmup=0.05"],
    "warmup=1": ["--warmup=1"],
    "nopolyak": ["--nopolyak"],
    "polyak_epochs=0.1": ["--polyak_epochs=0.1"],
    "polyak_epochs=1": ["--polyak_epochs=1"],
    "k_glow=4": ["--k_glow=4"],
    "k_glow=16": ["--k_glow=16"],
    "hidden_channels=32": ["--hidden_channels=32"],
    "hidden_channels=128": ["--hidden_channels=128"],
    "additive": ["--coupling=additive"],
    "augment": ["--augment"],
    "batch_size=16": ["--batch_size=16"],
    "batch_size=64": ["--batch_size=64"],
    "log_scale_factor=3": ["--log_scale_factor=3"],
    "adam": ["--optimizer=adam"],
}


def run_row(data_dir, flags, folder, log_path):
    """Runs main.py in `folder`; returns (metrics or None, wall seconds, its last line).

    A row that fails (say, training diverged at a high learning rate) gives
    None and the last line main.py wrote, which says why, so the table goes on.
    """
    command = [sys.executable, os.path.join(ROOT, "main.py"), "--dataset", "folder",
               "--data_dir", data_dir, "--run_dir", folder, *flags]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(shlex.join(command) + "\n")
        log.flush()
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    with open(log_path) as log:
        lines = [line.strip() for line in log.read().replace("\r", "\n").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    if finished.returncode != 0:
        return None, wall, last
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f), wall, last


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.photo_levers")
    parser.add_argument("data_dir", help="the image folder main.py --dataset folder reads")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated rows, of: {', '.join(ROWS)}")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per row")
    parser.add_argument("--base", default=" ".join(BASE),
                        help="the base recipe's main.py flags, space-separated "
                             "(default: %(default)s)")
    parser.add_argument("--flags", default="",
                        help="more main.py flags for every row, after the row's own")
    parser.add_argument("--keep", default=None,
                        help="keep each row's run folder and its output (main.py.log) "
                             "in KEEP/<row> instead of deleting them")
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; expected some of {', '.join(ROWS)}.")
    if not os.path.isdir(args.data_dir):
        parser.error(f"data_dir={args.data_dir!r}: expected an existing folder of images.")
    base, extra = args.base.split(), args.flags.split()
    print(f"base: {' '.join(base)} --epochs={args.epochs}" + (f" {' '.join(extra)}" if extra else ""))
    print("| row | flags | held-out bits/dim (final) | best held-out bits/dim (epoch) "
          "| train bits/dim (last epoch) | steps | wall s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        flags = [*base, *ROWS[row], *extra, f"--epochs={args.epochs}"]
        if args.keep:
            kept = os.path.join(args.keep, row)
            if os.path.exists(kept):
                parser.error(f"--keep: {kept} exists already; choose another folder.")
            os.makedirs(kept)
            metrics, wall, last = run_row(args.data_dir, flags, os.path.join(kept, "run"),
                                          os.path.join(kept, "main.py.log"))
        else:
            with tempfile.TemporaryDirectory(prefix="photo_levers_") as folder:
                metrics, wall, last = run_row(args.data_dir, flags, os.path.join(folder, "run"),
                                              os.path.join(folder, "main.py.log"))
        changed = " ".join(ROWS[row] + extra) or "(base)"
        if metrics is None:
            print(f"| {row} | {changed} | failed: {last} | | | | {wall:.0f} |", flush=True)
            continue
        print(f"| {row} | {changed} | {metrics['test_bits_per_dim']:.4f} "
              f"| {metrics['best_test_bits_per_dim']:.4f} ({metrics['best_epoch']}) "
              f"| {metrics['train_bits_per_dim']:.4f} | {metrics['steps']} | {wall:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
