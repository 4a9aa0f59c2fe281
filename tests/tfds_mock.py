"""tensorflow-datasets' mock data, for the tests of what glow_tf does with a dataset's examples."""

import contextlib
from unittest import mock


@contextlib.contextmanager
def mock_data(num_examples):
    """`tfds.testing.mock_data`, its datasets taken as prepared.

    mock_data makes download_and_prepare do nothing and invents the
    examples; glow_tf asks whether the data are prepared first
    (glow_tf.tf.tfds_sources.is_prepared), which must then say yes. The real preparation is tested on served
    archives (tests/data/test_tfds_preparation.py).
    """
    import tensorflow_datasets as tfds

    from glow_tf.tf import tfds_sources

    with tfds.testing.mock_data(num_examples=num_examples), mock.patch.object(
        tfds_sources, "is_prepared", return_value=True
    ):
        yield
