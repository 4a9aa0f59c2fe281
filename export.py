"""A trained Glow as a TensorFlow SavedModel; installed as the `glow-export` command (glow_tf/cli/export.py).

    python export.py --run_dir digits-pretrained --out /tmp/digits-export
"""

from glow_tf.cli import export

if __name__ == "__main__":
    export.run()
