"""`python -m tests.pause_at_backup STEP SCRIPT ARGS...`: `python SCRIPT ARGS` that stops
itself (SIGSTOP) right after it writes a run backup of a step past STEP.

A test that kills a run after a given backup waits for the stopped state
(`tests.processes.stopped`): however fast the machine, the run cannot have
gone on past that backup, nor finished, before the kill.
"""

import os
import pathlib
import runpy
import signal
import sys

from glow_tf.runs import state  # NumPy only: Keras still starts from the script's flags


def stop_after_backups_past(step):
    write = state.write

    def write_then_stop(path, model, model_values, written_step, *args, **kwargs):
        write(path, model, model_values, written_step, *args, **kwargs)
        if written_step > step and pathlib.PurePath(path).parts[-2:] == ("backup", "state.npz"):
            os.kill(os.getpid(), signal.SIGSTOP)

    state.write = write_then_stop  # the callbacks look it up on the module at each call


if __name__ == "__main__":
    past, script, *args = sys.argv[1:]
    stop_after_backups_past(int(past))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
