"""The training-step benchmark's clock: steps that Keras reports out of order.

On JAX, Keras runs an `async_safe` callback's step ends in threads of a
pool, so the end of one step can reach the callback before the end of the
step before it. The step times must still come out in order, and never
below zero.
"""

import threading

import keras

from benchmarks import train_step
from tests.processes import HANG


class StepsEndOutOfOrder:
    """A model whose fit() reports each step's end in a thread of its own, the last step's
    thread started first."""

    def fit(self, x, batch_size, epochs, verbose, shuffle, callbacks):
        (clock,) = callbacks
        threads = [threading.Thread(target=clock.on_train_batch_end, args=(step, {"loss": 1.0}))
                   for step in reversed(range(len(x) // batch_size))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG)
            assert not thread.is_alive(), "a step's end is still waiting"
        return Done()


class Done:
    history = {"loss": [1.0]}  # as fit()'s History


def test_steps_reported_out_of_order_are_timed_in_order(monkeypatch):
    monkeypatch.setattr(train_step, "keras", keras)
    for _ in range(20):  # a thread started first usually runs first
        first_step_s, warmup_s, step_ms, cpu_ms, loss = train_step._time_one_fit(
            StepsEndOutOfOrder(), images=list(range(2 * 7)), batch=2, spe=1, warmup=2,
            steps=1, repeats=5)
        assert 0 < first_step_s <= warmup_s
        assert len(step_ms) == 5 and all(ms >= 0 for ms in step_ms), step_ms
        assert loss == 1.0
