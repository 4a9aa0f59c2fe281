"""Writing files so that a crash never leaves half of one.

Every file is written to a temporary name in the same folder and then moved
over the old one with `os.replace`, which is atomic: a crash leaves either
the old file or the new one, never half of one. A Ctrl-C during a write
leaves the old one.
"""

import errno
import glob
import io
import json
import os
import tempfile
import uuid

from glow_tf import interrupts

# In the name of every temp file, which also starts with ".".
TEMP_MARK = ".tmp"

# A write that fails for want of space: the disk is full, the user's quota is
# spent, or the process's file-size limit (ulimit -f) is reached.
NO_SPACE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is spent",
            errno.EFBIG: "the file-size limit (ulimit -f) is reached"}


class WriteError(OSError):
    """A file that could not be written; the file of that name, if any, is unchanged.

    An OSError with the cause's errno, whose message names the file and
    says why in words a user can act on.

    Args:
        path: the file.
        cause: the OSError of the failed write.
        kept: what is left of the file (default: as it was before the write;
            "": not said).
    """

    def __init__(self, path, cause, kept=None):
        reason = NO_SPACE.get(cause.errno) or (cause.strerror or str(cause)).lower()
        super().__init__(cause.errno, f"{path} could not be written: {reason}", path)
        self.path, self.reason = path, reason
        if kept is None:
            kept = "the file there before is unchanged" if os.path.exists(path) else \
                "nothing was written"
        self.kept = kept

    def __str__(self):
        return f"{self.strerror} ({self.kept})." if self.kept else f"{self.strerror}."

    @property
    def no_space(self):
        return self.errno in NO_SPACE


def atomic_write(path, write):
    """Calls write(temp_path), then moves the temp file over `path`.

    The temp file lives in the same folder (os.replace is only atomic within
    one file system) and keeps the suffix of `path`, since Keras picks the
    format of a weights file by its name.

    Raises:
        WriteError: the write failed (a full disk, a read-only folder); the
            temp file is gone and `path` is as it was.
    """
    folder, name = os.path.split(os.path.abspath(path))
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    # A prefix of this write's own, so that its temp file is found and removed
    # even if a Ctrl-C comes between mkstemp making it and returning its name.
    prefix = f".{name}.{uuid.uuid4().hex[:8]}."
    try:
        handle, temp = tempfile.mkstemp(prefix=prefix, suffix=f"{TEMP_MARK}{suffix}", dir=folder)
        os.close(handle)
        write(temp)
        # On disk before the rename, so that a power cut cannot leave the new
        # name on an empty file (a killed process needs no fsync: the kernel
        # still writes what it was given).
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private; give it the permissions of a new file.
        os.chmod(temp, 0o666 & ~_umask())
        # After a Ctrl-C nothing new is put in place, even if some code dropped
        # its KeyboardInterrupt during the write (glow_tf.interrupts).
        interrupts.check()
        os.replace(temp, path)
    except BaseException as error:
        for leftover in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
            os.remove(leftover)
        if isinstance(error, OSError) and not isinstance(error, WriteError) and error.errno:
            raise WriteError(path, error) from None
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
    """model.save_weights(path), atomically.

    HDF5 writes the file into memory and Python copies it to disk. Written by
    HDF5 straight to a full disk, a failed write leaves HDF5 a file it cannot
    close: Keras does not close it on an error, and the interpreter's exit
    then reports every failed flush and may crash in HDF5. In memory the HDF5
    part cannot fail that way, and a full disk is an OSError of the copy.
    """
    buffer = _weights_file_in_memory(model)

    def write(temp):
        with open(temp, "wb") as f:
            f.write(buffer.getbuffer())

    atomic_write(path, write)


def _weights_file_in_memory(model):
    """A BytesIO holding the file model.save_weights writes, written by Keras."""
    from glow_tf import keras_internals

    if not model.built:
        raise ValueError("Saving the weights of a model that is not built; build it first.")
    buffer = io.BytesIO()
    keras_internals.write_weights_file(model, buffer)
    return buffer
