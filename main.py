"""Trains a Glow; installed as the `glow-train` command (glow_tf/cli/train.py).

    python main.py                                    # digits, offline, CPU minutes
    python main.py --dataset cifar10 --k_glow 32 --l_glow 3
    python main.py --help                             # every flag, its default and preset
"""

from glow_tf.cli import train

if __name__ == "__main__":
    train.run()
