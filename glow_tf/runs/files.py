"""Writing files so that a crash never leaves half of one.

Every file is written to a temporary name in the same folder and then moved
over the old one with `os.replace`, which is atomic: a crash leaves either
the old file or the new one, never half of one.
"""

import json
import os
import tempfile

# In the name of every temp file, which also starts with ".".
TEMP_MARK = ".tmp"


def atomic_write(path, write):
    """Calls write(temp_path), then moves the temp file over `path`.

    The temp file lives in the same folder (os.replace is only atomic within
    one file system) and keeps the suffix of `path`, since Keras picks the
    format of a weights file by its name.
    """
    folder, name = os.path.split(os.path.abspath(path))
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    handle, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=f"{TEMP_MARK}{suffix}", dir=folder)
    os.close(handle)
    try:
        write(temp)
        # On disk before the rename, so that a power cut cannot leave the new
        # name on an empty file (a killed process needs no fsync: the kernel
        # still writes what it was given).
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private; give it the permissions of a new file.
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_temp_files(folder):
    """Deletes the temp files that a killed writer left in folder (not recursive)."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(".") and TEMP_MARK in name:
            os.remove(os.path.join(folder, name))


def write_json(path, value):
    def write(temp):
        with open(temp, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(path, write)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_weights(model, path):
    """model.save_weights(path), atomically."""
    atomic_write(path, lambda temp: model.save_weights(temp))
