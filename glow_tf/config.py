"""GlowConfig: the architecture hyperparameters of one Glow model."""

import dataclasses

COUPLINGS = ("affine", "additive")
# The paper's three ways of permuting channels between couplings (section 3.2):
# a learned 1x1 convolution (LU-decomposed or plain), a fixed reversal, and a
# fixed random shuffle.
PERMUTATIONS = ("lu", "conv", "reverse", "shuffle")


def check_n_bits(n_bits, error=ValueError):
    """Raises `error` naming `n_bits` unless it is an integer in 1..8.

    The model's quantisation and the data's bit reduction share this check,
    so that both refuse the same values with the same words.
    """
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= 8:
        raise error(f"n_bits={n_bits!r}: expected an integer in 1..8.")


@dataclasses.dataclass(frozen=True)
class GlowConfig:
    """Architecture of a Glow model.

    The defaults are the paper's CIFAR-10 model (Kingma & Dhariwal 2018,
    table 4): K=32 steps per level, L=3 levels, 512 hidden channels, affine
    coupling, LU-decomposed 1x1 convolutions, 8-bit images.

    Attributes:
        image_shape: (height, width, channels) of the images. Height and
            width must be divisible by 2**l_glow (one squeeze per level).
        k_glow: K, steps of flow per level.
        l_glow: L, levels of the multi-scale architecture.
        hidden_channels: width of the coupling networks.
        coupling: "affine" or "additive".
        permutation: "lu" (LU-decomposed invertible 1x1 conv), "conv"
            (plain invertible 1x1 conv), "reverse" or "shuffle".
        n_bits: bits per colour channel the images are quantised to (1..8).
        num_classes: classes of a class-conditional model (the top prior
            depends on the label, and a classifier reads the top latent);
            0 for an unconditional one.
        weight_y: weight of the classifier's cross-entropy (in bits per
            image) in the loss of a class-conditional model.
        seed: seed of the weight initialisers; None draws a random one.
    """

    image_shape: tuple = (32, 32, 3)
    k_glow: int = 32
    l_glow: int = 3
    hidden_channels: int = 512
    coupling: str = "affine"
    permutation: str = "lu"
    n_bits: int = 8
    num_classes: int = 0
    weight_y: float = 0.01
    seed: int | None = None

    def __post_init__(self):
        # A JSON round trip turns the tuple into a list; keep it hashable.
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        shape = self.image_shape
        if len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise ValueError(
                f"image_shape={shape!r}: expected three positive integers "
                "(height, width, channels)."
            )
        for name in ("k_glow", "l_glow", "hidden_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}: expected an integer >= 1.")
        if self.coupling not in COUPLINGS:
            raise ValueError(
                f"coupling={self.coupling!r}: expected one of {', '.join(COUPLINGS)}."
            )
        if self.permutation not in PERMUTATIONS:
            raise ValueError(
                f"permutation={self.permutation!r}: expected one of "
                f"{', '.join(PERMUTATIONS)}."
            )
        check_n_bits(self.n_bits)
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(
                f"num_classes={self.num_classes!r}: expected 0 (unconditional) or "
                "the number of classes."
            )
        if not self.weight_y >= 0:  # also rejects NaN
            raise ValueError(f"weight_y={self.weight_y!r}: expected a value >= 0.")
        height, width, _ = shape
        factor = 2**self.l_glow
        if height % factor or width % factor:
            raise ValueError(
                f"image_shape={shape!r}: height and width must be divisible by "
                f"2**l_glow = {factor} (l_glow={self.l_glow}), since every level "
                "halves them. Resize or pad the images, or use fewer levels."
            )

    @property
    def num_dims(self):
        """D = H * W * C, the dimension bits/dim divides by."""
        height, width, channels = self.image_shape
        return height * width * channels

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from `to_dict()` output, naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown GlowConfig fields {unknown}; expected a subset of "
                f"{sorted(known)}."
            )
        return cls(**values)
