"""Pictures from a trained Glow; installed as the `glow-sample` command (glow_tf/cli/sample.py).

    python sample.py --temp 0.7                       # samples of the newest run
    python sample.py --mode temperatures              # also: interpolate, reconstruct
"""

from glow_tf.cli import sample

if __name__ == "__main__":
    sample.run()
