"""Images/s of an image folder's per-epoch decode, with tf.data's autotuning off and on.

    python -m benchmarks.folder_decode --data_dir DIR --images 20000

The map that a folder too large for memory runs in every epoch
(`glow_tf/tf/pipelines.py`: read, decode, resize, reduce to n_bits), over
the first `--images` files of the folder's training split, batched by 64 and
prefetched, as the pipelines are. The rows alternate: glow_tf's pipelines
run without autotuning (`pipelines.untuned`, docs/design.md says why), and
this shows what that costs the input. One short pass comes first, unrecorded;
"cores busy" is the process's CPU time over the wall time.
"""

import argparse
import time

import tensorflow as tf

from glow_tf import image_folders
from glow_tf.datasets import DatasetError
from glow_tf.cli.settings import configs_for
from glow_tf.tf import pipelines


def images_per_second(files, config, autotune):
    dataset = tf.data.Dataset.from_tensor_slices(files).map(
        lambda path: pipelines._decode_file(path, config), num_parallel_calls=tf.data.AUTOTUNE,
    ).batch(64).prefetch(tf.data.AUTOTUNE)
    if not autotune:
        dataset = pipelines.untuned(dataset)
    wall, cpu = time.perf_counter(), time.process_time()
    count = sum(int(batch.shape[0]) for batch in dataset)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count, count / wall, cpu / wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="an image folder (docs/training.md)")
    parser.add_argument("--images", type=int, default=20000, help="files to decode per row")
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="rows of each setting")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error(f"--images={args.images} and --repeats={args.repeats}: expected >= 1.")
    try:
        config = configs_for("folder", data_dir=args.data_dir, img_size=args.img_size)[1]
        files = list(image_folders.find(args.data_dir).files("train"))[:args.images]
    except (DatasetError, ValueError) as error:
        parser.error(str(error))
    images_per_second(files[:256], config, autotune=False)  # TensorFlow's first-call costs
    print("| autotuning | images | images/s | cores busy |")
    print("|---|---|---|---|")
    for _ in range(args.repeats):
        for autotune in (False, True):
            count, rate, busy = images_per_second(files, config, autotune)
            print(f"| {'on' if autotune else 'off (glow_tf)'} | {count:,} | {rate:,.0f} | {busy:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
