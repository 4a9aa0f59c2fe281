"""The flags that give a benchmark its model's shape: the paper's CIFAR-10 model by default."""

PAPER = {"image_size": 32, "channels": 3, "k_glow": 32, "l_glow": 3, "hidden_channels": 512}


def add_model_flags(parser, **defaults):
    """--image_size, --channels, --k_glow, --l_glow and --hidden_channels, with the
    paper's values unless `defaults` says otherwise."""
    for name, default in {**PAPER, **defaults}.items():
        parser.add_argument(f"--{name}", type=int, default=default)
