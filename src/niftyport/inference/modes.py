"""The inference modes (torch-free, so that the command line can list them without importing torch)."""
from __future__ import annotations

#: mode -> what it gives. ``niftynet`` is the default and NiftyNet's exact output.
MODES = {
    "niftynet": "NiftyNet's windows, border cropping and overwrite order: identical labels",
    "niftynet-fast": "NiftyNet's windows on the fast engine: ~2x faster, a near-tie voxel may differ",
    "full": "whole-volume output (no window seams) in halo tiles: fastest, departs from NiftyNet",
    "full-eager": "as 'full', with eager PyTorch's arithmetic (bit for bit as one model(volume))",
    "full-winograd": "as 'full', 3x3x3 layers by Winograd F(4,3) (C kernel built on first use): "
                     "fewer FLOPs, logits within ~1e-4",
}

#: What ``--device`` takes besides ``cuda:N``.
DEVICES = ("auto", "cpu", "cuda")
