"""The images every search space and model is built for: Fashion-MNIST.

A leaf module (it imports nothing from ``tuning``), so the spaces and the models that
read these facts never import each other.
"""
from __future__ import annotations

# (channels, height, width) of one image, as ``tuning.data`` hands it to a model
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
