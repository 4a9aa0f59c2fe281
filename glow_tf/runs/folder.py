"""One training run's folder: what it holds, and whether a run may use it.

    <run_dir>/
      config.json           {"model": GlowConfig, "data": DataConfig, "training": TrainingConfig}
      newest.weights.h5     weights after the latest epoch (Keras' format; written
                            when training ends, and meanwhile every minute or so)
      best.weights.h5       weights of the epoch with the lowest test bits/dim (same)
      metrics.json          per-epoch progress (and the Keras backend of the latest
                            epoch); the final test bits/dim once finished
      backup/state.npz      the state a resumed run starts from: weights, optimizer,
                            step count (glow_tf.runs.state), after every epoch and
                            every --backup_every steps
      backup/best.npz       the best epoch's weights, until best.weights.h5 has them
      logs/                 TensorBoard: train/, validation/ (Keras), glow/ (ours)

Every file is written through `glow_tf.runs.files`, so a crash never leaves
half of one. Backend-agnostic: a run folder written on one Keras backend is
read on any other.
"""

import errno
import fcntl
import json
import os
import tempfile

from glow_tf.runs.files import TEMP_MARK, read_json, remove_temp_files, write_json

CONFIG = "config.json"
METRICS = "metrics.json"
NEWEST_WEIGHTS = "newest.weights.h5"
BEST_WEIGHTS = "best.weights.h5"
BACKUP = "backup"
# Inside BACKUP (glow_tf.runs.state): the state a resumed run starts from
# (weights, optimizer, step count), and the best epoch's weights until the
# next write of best.weights.h5.
BACKUP_STATE = "state.npz"
BEST_STATE = "best.npz"
LOGS = "logs"
# The one writer's lock (see RunDir.lock); it holds that process's id.
LOCK = ".lock"
WEIGHTS = {"newest": NEWEST_WEIGHTS, "best": BEST_WEIGHTS}
# Hyperparameters a rerun may change without starting a different run:
# more epochs extend it, how often it backs up does not change the result,
# and a lower learning rate or gradient clipping is how a run that diverged
# goes on from its last good backup. Nor do the ways of computing the same
# step: XLA, steps per execution, rematerialisation, the loop over a level's
# steps, threads and the devices
# (--batch_size is the global batch, so the steps are the same on any number
# of them). Not mixed_precision: it changes the numbers trained on, and
# float16 adds loss-scale state to the optimizer that a backup without it
# cannot restore.
MAY_CHANGE_ON_RESUME = (
    ("training", "epochs"), ("training", "backup_every"),
    ("training", "lr"), ("training", "clipnorm"), ("training", "jit"),
    ("training", "steps_per_execution"), ("training", "remat"), ("training", "strategy"),
    ("training", "threads_per_op"), ("training", "loop"),
)

# Compared only when both runs average (else polyak differs, or neither uses it).
POLYAK_ONLY = ("training", "polyak_epochs")


class RunDirError(ValueError):
    """A run folder that cannot be used as asked (a user's error, not a bug)."""


class RunDirMismatchError(RunDirError):
    """The run folder holds a run with other hyperparameters than asked for."""


class RunDirBusyError(RunDirError):
    """Another process is training in the run folder."""


class RunDir:
    """Paths in one run folder, and its config and metrics files.

    Args:
        path: the run folder (created by `prepare`).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._lock_fd = None

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def backup_dir(self):
        return self.file(BACKUP)

    @property
    def log_dir(self):
        return self.file(LOGS)

    def weights(self, which="newest"):
        if which not in WEIGHTS:
            raise ValueError(f"which={which!r}: expected one of {', '.join(WEIGHTS)}.")
        return self.file(WEIGHTS[which])

    def backup(self, name=BACKUP_STATE):
        return os.path.join(self.backup_dir, name)

    def has_backup(self):
        """Whether an interrupted (or finished) run left a state to resume."""
        return os.path.exists(self.backup(BACKUP_STATE))

    def read_config(self):
        path = self.file(CONFIG)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: {self.path!r} is not a training run folder "
                "(main.py writes config.json when a run starts)."
            )
        return read_json(path)

    def read_metrics(self):
        """metrics.json as a dict ({} before the first epoch); RunDirError if unreadable."""
        path = self.file(METRICS)
        if not os.path.exists(path):
            return {}
        try:
            metrics = read_json(path)
        except (OSError, ValueError) as error:
            metrics = error
        if not isinstance(metrics, dict):
            raise RunDirError(
                f"{path} cannot be read ({metrics!r}): it is truncated or not main.py's. Move it "
                "away; the run resumes from its backup without it (the record of the best "
                "epoch starts again)."
            )
        return metrics

    def write_metrics(self, metrics):
        write_json(self.file(METRICS), metrics)

    def check(self, config):
        """Raises RunDirError unless `prepare(config)` can use the folder; writes nothing.

        The folder (or the nearest folder above it that exists) must be
        writable, and a folder that already holds a run must hold this run:
        every hyperparameter but those in MAY_CHANGE_ON_RESUME must match, or
        RunDirMismatchError names the ones that differ.
        """
        self.check_writable()
        path = self.file(CONFIG)
        if not os.path.exists(path):
            self.check_no_orphans()
            return
        try:
            stored = read_json(path)
        except (OSError, ValueError) as error:
            raise RunDirError(
                f"{path} cannot be read ({error}); expected the config.json that main.py "
                "wrote. Restore it from a copy to resume the run, or give this run its own "
                "--run_dir."
            ) from None
        differences = config_differences(stored, config)
        if differences:
            raise RunDirMismatchError(
                f"{self.path} holds a run with other hyperparameters: "
                + "; ".join(differences)
                + ". Rerun with the same values to resume that run, or give "
                "this one its own folder (--run_dir)."
            )

    def check_no_orphans(self):
        """A folder with weights or a backup but no config.json is some other run's."""
        found = [
            name for name in (NEWEST_WEIGHTS, BEST_WEIGHTS, os.path.join(BACKUP, BACKUP_STATE),
                              METRICS)
            if os.path.exists(self.file(name))
        ]
        if found:
            raise RunDirError(
                f"{self.path} holds {', '.join(found)} but no {CONFIG}, so nothing tells which "
                "hyperparameters they were trained with. Put that run's config.json back to "
                "resume it, move those files away, or give this run its own --run_dir."
            )

    def check_writable(self):
        path = os.path.abspath(self.path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise RunDirError(f"run_dir={self.path!r} is a file; expected a folder for the run.")
        existing = path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise RunDirError(
                f"run_dir={self.path!r}: {existing} is a file, so no folder can be made under it."
            )
        problem = _write_problem(existing)
        if problem:
            raise RunDirError(
                f"run_dir={self.path!r} cannot be written ({problem} in {existing}); "
                "expected a folder this user may write to."
            )
        # The run writes into its subfolders too: one that cannot be written
        # would fail the run at its first backup or summary, minutes in.
        for name in (BACKUP, LOGS, *(os.path.join(LOGS, n) for n in ("train", "validation",
                                                                      "glow"))):
            folder = self.file(name)
            if os.path.exists(folder) and not os.path.isdir(folder):
                raise RunDirError(
                    f"{folder} is a file; the run keeps a folder of that name. Move it away."
                )
            problem = os.path.isdir(folder) and _write_problem(folder)
            if problem:
                raise RunDirError(
                    f"{folder} cannot be written ({problem}), though the run "
                    "folder can: make it writable for this user, or give this run its own "
                    "--run_dir."
                )

    def lock(self):
        """Makes this process the folder's one writer until `unlock` or its end.

        An exclusive `flock` on <run_dir>/.lock, which the operating system
        drops when the process ends however it ends (a SIGKILL leaves no
        stale lock). Readers (sample.py, evaluate.py) do not take it.

        Raises:
            RunDirBusyError: another process holds it; names its process id.
        """
        if self._lock_fd is not None:
            return
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirBusyError(
                f"{self.path} is in use: process {holder} is training there. Wait for it to "
                "finish (or stop it; the same command then resumes), or give this run its own "
                "--run_dir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def __del__(self):
        self.unlock()

    def prepare(self, config):
        """Takes the folder's lock, then creates it with config.json or checks the one there.

        Runs `check(config)` first, so a refused folder is left as it was, and
        again under the lock, since another process may have started the run
        in between. config.json is written when it is new or one of the
        values in MAY_CHANGE_ON_RESUME changed.
        """
        self.check(config)
        self.lock()
        self.check(config)
        # A run killed (SIGKILL) in the middle of a write leaves its temp file.
        # Only the lock's holder gets here, so the temp files are a dead writer's.
        for folder in (self.path, self.backup_dir):
            remove_temp_files(folder)
        path = self.file(CONFIG)
        if os.path.exists(path) and read_json(path) == _jsonable(config):
            return
        write_json(path, config)


def _write_problem(folder):
    """Why nothing can be created in folder (e.g. "Permission denied"), or None.

    Permission bits do not tell (root, read-only mounts, /proc): make and
    remove an empty folder there.
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".probe{TEMP_MARK}", dir=folder))
    except OSError as error:
        return error.strerror or str(error)
    return None


def config_differences(stored, asked):
    """'section.name: X in the run folder, Y now' for each value that differs."""
    differences = []
    for section in sorted(set(stored) | set(asked)):
        old, new = stored.get(section, {}), asked.get(section, {})
        if not isinstance(old, dict) or not isinstance(new, dict):
            if old != new:
                differences.append(f"{section}: {old!r} in the run folder, {new!r} now")
            continue
        for name in sorted(set(old) | set(new)):
            key = (section, name)
            if key in MAY_CHANGE_ON_RESUME:
                continue
            if key == POLYAK_ONLY and not (old.get("polyak") and new.get("polyak")):
                continue
            # JSON turns tuples into lists; compare them as lists.
            a, b = _jsonable(old.get(name)), _jsonable(new.get(name))
            if a != b:
                differences.append(f"{section}.{name}: {a!r} in the run folder, {b!r} now")
    return differences


def _jsonable(value):
    return json.loads(json.dumps(value))
