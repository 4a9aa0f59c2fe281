"""Histograms drawn with Pillow, so the evaluation needs no plotting library."""

import numpy as np

# Fill colours of the histograms, in order (blue, orange, green), drawn half transparent.
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))
_WIDTH, _HEIGHT = 640, 400
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 20, 50, 50


def histograms(named_values, title="", x_label="bits/dim", bins=40):
    """Overlaid histograms of several sets of values, as a uint8 (H, W, 3) image.

    Each set is normalised to a density (area one), so sets of different
    sizes compare by shape, as in Nalisnick et al.'s figures.

    Args:
        named_values: {legend name: 1-D values}, at most three sets.
        title: printed above the plot.
        bins: bins across the range of all the values together.
    """
    from PIL import Image, ImageDraw

    if not 1 <= len(named_values) <= len(COLOURS):
        raise ValueError(f"Got {len(named_values)} sets; expected 1 to {len(COLOURS)}.")
    sets = {name: np.asarray(values, np.float64).ravel() for name, values in named_values.items()}
    for name, values in sets.items():
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: expected a non-empty set of finite values.")
    everything = np.concatenate(list(sets.values()))
    low, high = float(everything.min()), float(everything.max())
    if high - low < 1e-9:  # one value: give the bars some width
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    densities = {name: np.histogram(v, edges, density=True)[0] for name, v in sets.items()}
    peak = max(d.max() for d in densities.values())

    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    image = Image.new("RGBA", (_WIDTH, _HEIGHT), "white")
    for density, colour in zip(densities.values(), COLOURS):
        # One layer per set, so the overlapping bars blend.
        layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
        bars = ImageDraw.Draw(layer)
        for i, value in enumerate(density):
            x0 = _LEFT + plot_w * i / bins
            x1 = _LEFT + plot_w * (i + 1) / bins
            y0 = _TOP + plot_h * (1 - value / peak)
            if value > 0:
                bars.rectangle([x0, y0, x1, _TOP + plot_h], fill=(*colour, 110),
                               outline=(*colour, 255))
        image = Image.alpha_composite(image, layer)
    image = image.convert("RGB")

    draw = ImageDraw.Draw(image)
    draw.rectangle([_LEFT, _TOP, _LEFT + plot_w, _TOP + plot_h], outline="black")
    for tick in np.linspace(low, high, 6):
        x = _LEFT + plot_w * (tick - low) / (high - low)
        draw.line([x, _TOP + plot_h, x, _TOP + plot_h + 5], fill="black")
        draw.text((x - 15, _TOP + plot_h + 8), f"{tick:.2f}", fill="black")
    draw.text((_LEFT + plot_w / 2 - 25, _HEIGHT - 20), x_label, fill="black")
    draw.text((8, _TOP), "density", fill="black")
    draw.text((_LEFT, 15), title, fill="black")
    for row, ((name, values), colour) in enumerate(zip(sets.items(), COLOURS)):
        y = _TOP + 8 + 16 * row
        draw.rectangle([_LEFT + plot_w - 200, y, _LEFT + plot_w - 190, y + 10], fill=colour)
        draw.text((_LEFT + plot_w - 185, y - 1), f"{name} (n={values.size})", fill="black")
    return np.asarray(image)
