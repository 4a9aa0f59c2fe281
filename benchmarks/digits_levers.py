"""What each training lever does on digits: the README's command with one change at a time.

    python -m benchmarks.digits_levers                       # every row below
    python -m benchmarks.digits_levers --rows baseline,polyak --epochs 40
    python -m benchmarks.digits_levers --epochs 40 --flags=--lr=2e-3   # docs/training.md's table

Each row runs `python main.py --dataset digits <flags>` in a fresh run folder
(so each row has the preset's steps, or --epochs of 22 steps), and
prints the final and best test bits/dim, the last epoch's training bits/dim
and the wall clock. The rows run one after another, in this process's
backend (KERAS_BACKEND).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each row says whether it averages and over how many epochs, so that it
# means the same whatever the defaults and the preset.
ROWS = {
    "baseline": ["--nopolyak"],
    "polyak": ["--polyak", "--polyak_epochs=1"],
    "polyak_epochs=3": ["--polyak", "--polyak_epochs=3"],
    "augment": ["--nopolyak", "--augment"],
    "log_scale_factor=3": ["--nopolyak", "--log_scale_factor=3"],
    "polyak+log_scale_factor=3": ["--polyak", "--polyak_epochs=1", "--log_scale_factor=3"],
    "polyak+augment": ["--polyak", "--polyak_epochs=1", "--augment"],
    "polyak+augment+log_scale_factor=3": ["--polyak", "--polyak_epochs=1", "--augment",
                                          "--log_scale_factor=3"],
}


def run_row(flags, epochs, folder):
    command = [sys.executable, os.path.join(ROOT, "main.py"), "--dataset", "digits",
               "--run_dir", folder, *flags]
    if epochs is not None:
        command.append(f"--epochs={epochs}")
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(os.path.join(folder, "metrics.json")) as f:
        metrics = json.load(f)
    return metrics, wall, command


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.digits_levers")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated rows, of: {', '.join(ROWS)}")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per row (default: the digits preset's)")
    parser.add_argument("--flags", default="",
                        help="more main.py flags for every row, space-separated")
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; expected some of {', '.join(ROWS)}.")
    print("| flags | test bits/dim (final) | best test bits/dim (epoch) "
          "| train bits/dim (last epoch) | steps | wall s |")
    print("|---|---|---|---|---|---|")
    extra = args.flags.split()
    for row in rows:
        with tempfile.TemporaryDirectory(prefix="digits_levers_") as folder:
            metrics, wall, _ = run_row(ROWS[row] + extra, args.epochs,
                                       os.path.join(folder, "run"))
        flags = " ".join(ROWS[row] + extra) or "(none)"
        print(f"| {flags} | {metrics['test_bits_per_dim']:.4f} "
              f"| {metrics['best_test_bits_per_dim']:.4f} ({metrics['best_epoch']}) "
              f"| {metrics['train_bits_per_dim']:.4f} | {metrics['steps']} | {wall:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
