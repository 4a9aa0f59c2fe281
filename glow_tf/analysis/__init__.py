"""Pictures and scores of a trained Glow (backend-agnostic: Keras, NumPy, Pillow).

`pictures`: samples by temperature, interpolations, reconstructions;
`scores`: per-image bits/dim, standard errors, the OOD AUROC; `images` and
`plots`: grids and histograms as PNG files.
"""
