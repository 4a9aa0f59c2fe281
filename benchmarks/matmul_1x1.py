"""The 1x1 conv's matmul on TensorFlow, in two forms, forward and backward.

    python -m benchmarks.matmul_1x1

NHWC x (C, C) as `tf.matmul` of the 4-D tensor (a broadcast batched matmul,
what `keras.ops.matmul` runs), against one 2-D matmul over (N*H*W, C), at
the shapes of a 32x32x3, L=3 Glow at batch 16. Prints microseconds per call
of a `tf.function`, three repeats of 200 calls each. docs/performance.md
says why the model keeps the batched form.
"""

import time

import tensorflow as tf

SHAPES = [(16, 16, 16, 12), (16, 8, 8, 24), (16, 4, 4, 48)]


def batched(x, kernel):
    return tf.matmul(x, tf.transpose(kernel))


def flat(x, kernel):
    flat_x = tf.reshape(x, [-1, x.shape[-1]])
    return tf.reshape(tf.matmul(flat_x, kernel, transpose_b=True), tf.shape(x))


def microseconds(mix, x, kernel, calls=200):
    @tf.function
    def step(x, kernel):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            loss = tf.reduce_sum(mix(x, kernel) ** 2)
        return tape.gradient(loss, [x, kernel])

    step(x, kernel)
    start = time.perf_counter()
    for _ in range(calls):
        result = step(x, kernel)
    result[0].numpy()
    return 1e6 * (time.perf_counter() - start) / calls


if __name__ == "__main__":
    for shape in SHAPES:
        x, kernel = tf.random.normal(shape), tf.random.normal((shape[-1], shape[-1]))
        a = [round(microseconds(batched, x, kernel)) for _ in range(3)]
        b = [round(microseconds(flat, x, kernel)) for _ in range(3)]
        print(f"{shape}: 4-D matmul {a} us, 2-D matmul {b} us")
