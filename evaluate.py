"""Scores a trained Glow; installed as the `glow-evaluate` command (glow_tf/cli/evaluate.py).

    python evaluate.py                                # test bits/dim of the newest run
    python evaluate.py --ood_dataset digits --ood_transform invert
"""

from glow_tf.cli import evaluate

if __name__ == "__main__":
    evaluate.run()
