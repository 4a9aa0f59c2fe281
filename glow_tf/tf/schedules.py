"""Learning-rate schedules (backend-agnostic)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="glow_tf")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from lr / warmup_steps to lr, then stays at lr.

    lr(step) = lr * min(1, (step + 1) / warmup_steps)

    as in the original Glow code, where the warmup is counted in epochs
    (`TrainingConfig.warmup`). The step is the optimizer's
    iteration count, which a resumed run restores, so the schedule continues
    where it stopped.

    Args:
        lr: the rate after the warmup.
        warmup_steps: steps to reach it; 0 for a constant rate.
    """

    def __init__(self, lr, warmup_steps):
        if not lr > 0:
            raise ValueError(f"lr={lr!r}: expected a learning rate > 0.")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps={warmup_steps!r}: expected a count >= 0.")
        self.lr = float(lr)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        if self.warmup_steps == 0:
            return ops.convert_to_tensor(self.lr, "float32")
        fraction = (ops.cast(step, "float32") + 1.0) / self.warmup_steps
        return self.lr * ops.minimum(1.0, fraction)

    def get_config(self):
        return {"lr": self.lr, "warmup_steps": self.warmup_steps}
