"""The roofline benchmark (benchmarks/roofline.py): its count of a step's arithmetic and its table."""

import math
import re

import pytest

from benchmarks import roofline
from glow_tf import Glow, GlowConfig


def multiply_adds_from_the_weights(config):
    """A forward pass's multiply-adds per image, read off the built model's kernels."""
    height = config.image_shape[0]
    total = 0
    for weight in Glow(config).weights:
        # glow/flow/level_<l>/.../<name>; a level's steps stack theirs: .../steps_<l>/a.b.<name>
        parts = re.split("[/.]", weight.path)
        # The coupling networks' and split priors' convolutions ("kernel"), and the 1x1
        # convolution: a channels x channels matmul per pixel ("lower" is that matrix).
        if parts[-1] in ("kernel", "lower"):
            level = int(parts[2].removeprefix("level_"))
            total += math.prod(weight.shape) * (height // 2 ** (level + 1)) ** 2
    return total


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_the_count_is_the_models_kernels_three_times(coupling):
    config = GlowConfig(image_shape=(16, 16, 3), k_glow=2, l_glow=3, hidden_channels=8,
                        coupling=coupling)
    per_image = multiply_adds_from_the_weights(config)
    assert per_image > 0
    assert roofline.step_multiply_adds(config, batch_size=5) == 3 * 5 * per_image


def test_the_paper_step_is_385_gflop():
    # 32x32x3, K=32, L=3, width 512 at batch 16: the figure docs/performance.md gives.
    paper = GlowConfig(image_shape=(32, 32, 3), k_glow=32, l_glow=3, hidden_channels=512)
    assert round(2 * roofline.step_multiply_adds(paper, 16) / 1e9, 1) == 385.1


def test_the_table_has_a_row_per_shape_and_dtype(capsys):
    roofline.main(["--image_size=8", "--k_glow=1", "--l_glow=2", "--hidden_channels=8",
                   "--batch_size=2", "--square=32", "--calls=1", "--before=1.0"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 4, rows  # the header, then 2 shapes x 2 dtypes
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3]) > 0 and cells[5].endswith("x"), row


def test_bad_flags_are_named(capsys):
    with pytest.raises(SystemExit):
        roofline.main(["--calls=0"])
    assert "--calls=0: expected a positive integer." in capsys.readouterr().err
