"""Ctrl-C that stops a program, even where Python would drop it.

Python turns SIGINT into a KeyboardInterrupt raised in whatever Python code
the main thread runs next. That code may be a finalizer: a garbage
collection callback, a `__del__`, a weakref callback. Python reports an
exception raised there as "Exception ignored in ..." and goes on, so the
Ctrl-C is lost. It happens: JAX registers a collection callback
(`_xla_gc_callback`), TensorFlow imports JAX where it is installed, and a
training process spends some of its time in the collector; a Ctrl-C that
arrives then is raised inside JAX's callback and dropped, and training goes
on (docs/faults.md, "Why a Ctrl-C was lost").

`install()`, which the command-line tools call first, makes every SIGINT:

- recorded, then raised as KeyboardInterrupt, as Python's own handler does;
- raised again once a finalizer that swallowed it has returned:
  `sys.unraisablehook` sees it, and a helper thread hands the signal back
  to the main thread when that next lets go of the interpreter (handed
  back from within the hook, it would be raised in the hook itself, and
  dropped again);
- not raised again while the first one is being handled (a second Ctrl-C
  does not break the clean-up and the message of the first).

`check()` raises KeyboardInterrupt if one was recorded: the library calls
it where it can stop cleanly (before a file is put in place, at a
training step's end), for an interruption that code caught and dropped
without reporting it; `caused(error)` says whether an error comes of a
Ctrl-C. Without `install()` nothing is recorded, and `check()` never
raises. `finish()` ends the handling in a program whose work is done.
"""

import _thread
import signal
import sys
import threading

_received = False
_before = None  # (SIGINT handler, unraisablehook) that install() replaced; None: not installed
_swallowed = threading.Event()  # set by the hook for the helper thread
_helper = None


def install():
    """Handles SIGINT as the module docstring says; from the program's main thread."""
    global _received, _before, _helper
    if _before is None:
        _before = (signal.getsignal(signal.SIGINT), sys.unraisablehook)
    _received = False
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _on_unraisable
    if _helper is None:
        _helper = threading.Thread(target=_hand_back, name="glow_tf.interrupts", daemon=True)
        _helper.start()


def uninstall():
    """Puts back the handling of before `install()`, and forgets a Ctrl-C it recorded."""
    global _received, _before
    if _before is not None:
        signal.signal(signal.SIGINT, _before[0])
        sys.unraisablehook = _before[1]
        _before = None
    _received = False


def received():
    """Whether a Ctrl-C came since `install()`."""
    return _received


def caused(error):
    """Whether `error` comes of a Ctrl-C: a KeyboardInterrupt, or any error raised once one came.

    Code may turn the KeyboardInterrupt into another exception (pybind11
    makes it an ImportError when it comes while one of TensorFlow's modules
    initialises), or fail on what it left half done.
    """
    return isinstance(error, KeyboardInterrupt) or (
        _received and not isinstance(error, (SystemExit, GeneratorExit)))


def check():
    """Raises KeyboardInterrupt if a Ctrl-C came, though some code dropped its first raise."""
    if _received:
        raise KeyboardInterrupt


def finish():
    """Ignores Ctrl-C from here on, the program's work being done; first, `check()`.

    A program calls it last, so that a Ctrl-C either came before, and ends
    it as an interruption, or comes as it exits, and changes nothing.
    """
    ignore()
    check()


def ignore():
    """Ignores Ctrl-C from here on, in a program that `install()`ed and is ending.

    Python puts SIGINT's default action back while it shuts down, and that
    would kill the process without a word, whatever it had said.
    """
    if _before is not None:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except KeyboardInterrupt:  # one was pending, and is recorded now
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _on_sigint(signum, frame):
    global _received
    _received = True
    if isinstance(sys.exc_info()[1], (KeyboardInterrupt, SystemExit)):
        return  # the program is stopping already: let it finish saying so
    raise KeyboardInterrupt


def _on_unraisable(unraisable):
    if _received and issubclass(unraisable.exc_type, KeyboardInterrupt):
        _swallowed.set()
    elif _before is not None:
        _before[1](unraisable)
    else:
        sys.__unraisablehook__(unraisable)


def _hand_back():
    """The helper thread: SIGINT again for the main thread, after a finalizer dropped it.

    It runs when the main thread lets go of the interpreter, past the hook;
    should the main thread be in another finalizer then, that one drops it
    too, and the hook asks again.
    """
    while True:
        _swallowed.wait()
        _swallowed.clear()
        if _before is not None:
            _thread.interrupt_main(signal.SIGINT)
