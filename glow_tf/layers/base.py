"""The protocol every Glow bijector follows."""

import keras
from keras import ops


class Bijector(keras.layers.Layer):
    """An invertible layer that also returns its log-determinant.

    `y, logdet = layer(x)` maps data towards the latent (the paper's
    direction); `x, logdet = layer(y, inverse=True)` generates. `logdet` is
    log|det dy/dx| of the direction executed, one float32 value per example,
    so the two directions' log-determinants are negatives of each other.

    Conditioning travels through the protocol: `labels` (one int class per
    example, or None) reaches every bijector of a composition, and those
    that do not depend on the class ignore it. x and y are tensors, or a
    tuple or list of them where a bijector splits one into several (the
    split of a level, the multi-scale flow's latents).

    Subclasses write the math once per direction in `forward` and `inverse`;
    shapes that change (squeeze, split) override `compute_output_shape`.
    """

    def call(self, x, inverse=False, labels=None):
        return self.inverse(x, labels) if inverse else self.forward(x, labels)

    def forward(self, x, labels=None):
        raise NotImplementedError

    def inverse(self, y, labels=None):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape


def on_cpu():
    """Whether Keras computes on a CPU: no GPU or TPU among its devices, on either backend."""
    return all(device.lower().startswith("cpu") for device in keras.distribution.list_devices())


def on_jax_cpu():
    """Whether Keras runs on JAX with a CPU as its default device (XLA's CPU backend)."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def jit_on_jax(function):
    """`function` compiled whole by `jax.jit` on JAX; itself on other backends.

    For a pure function of arrays in an eager pass. JAX runs each eager op
    as a program of its own, and compiles one for every op and shape it has
    not seen, so a step's few hundred small ops cost it a compilation each;
    jitted, the function is one program, compiled once for its input shapes.
    TensorFlow runs eager ops as they are.
    """
    if keras.backend.backend() != "jax":
        return function
    import jax

    return jax.jit(function)


class Hidden:
    """Layers that a layer calls but whose variables are not among its weights.

    Keras tracks a layer's sublayers through its attributes (a layer, or a
    list or tuple of them) and saves and trains their variables; it does
    not look inside this.
    """

    def __init__(self, layers):
        self.layers = list(layers)


def layers_within(layer, templates=True):
    """Every Keras layer inside `layer` (itself included), depth first.

    Found through the attributes that hold them (a layer, or a list or
    tuple of layers), which is how Keras tracks them too, and, with
    `templates`, the `Hidden` ones (a level's template step).
    """
    found, stack, seen = [], [layer], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, keras.layers.Layer):
            found.append(item)
            stack.extend(reversed(list(vars(item).values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, Hidden) and templates:
            stack.extend(reversed(item.layers))
    return found


def weight_name(variable):
    """A weight's own name: "kernel" for .../conv_in/kernel, and for a level's stacked
    .../steps_0/coupling.network.conv_in.kernel (FlowSteps names them by their path)."""
    return variable.path.replace(".", "/").rsplit("/", 1)[-1]


def per_example(value, x):
    """Broadcasts a log-determinant shared by the batch to shape (batch,)."""
    return ops.broadcast_to(ops.cast(value, "float32"), ops.shape(x)[:1])


def sum_per_example(t):
    """Sums a (batch, ...) tensor over everything but the batch axis, in float32."""
    return ops.sum(ops.cast(t, "float32"), axis=tuple(range(1, len(t.shape))))


def split_channels(x, channels_first):
    """(x[..., :channels_first], x[..., channels_first:]), as one split op.

    Not two slices: TensorFlow's gradient of a slice scatters into a zero
    tensor of the full shape, once per slice; the gradient of a split is one
    concatenation. Equal halves (every split of a Glow whose channels are
    even) are split by count: split points make Keras' TensorFlow backend
    compute the sizes with seven more ops, twice per coupling.
    """
    if 2 * channels_first == x.shape[-1]:
        return ops.split(x, 2, axis=-1)
    return ops.split(x, [channels_first], axis=-1)


def num_pixels(x):
    """H * W for an NHWC tensor: the count that per-channel log-dets repeat over."""
    count = 1
    for dim in x.shape[1:-1]:
        count *= dim
    return count


def matmul_channels(x, kernel):
    """x (..., C_in) times kernel (C_in, C_out): a linear map of the channels at every pixel.

    As one 2-D matmul between reshapes. Keras' TensorFlow backend computes
    the matmul of a 4-D tensor as a tensordot, which inside a function of
    any batch size (glow_tf.compiled) works out the shapes with some ten
    more ops per call.
    """
    y = ops.matmul(ops.reshape(x, (-1, x.shape[-1])), kernel)
    return ops.reshape(y, (-1, *x.shape[1:-1], kernel.shape[-1]))
