"""Output-size formulas shared by the convolution and pooling kernels and layers.

They follow PyTorch's ``conv2d`` and ``pooling_output_shape`` exactly, dilation
and ``ceil_mode`` included, so a layer and its kernel can never disagree on a shape.
"""
from __future__ import annotations

import numbers


def pair(value, name: str = "value", owner: str = "minidl") -> tuple[int, int]:
    """``value`` as an ``(h, w)`` tuple of ints: an int is used for both sides.

    Raises ValueError naming ``owner`` and ``name`` for anything that is not an
    int or a pair of ints (bools are refused: ``True`` is not a kernel size).
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Length of a convolution's output along one axis.

    ``floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1``
    (may be <= 0 when the dilated kernel is larger than the padded input).
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     ceil_mode: bool) -> int:
    """Length of a pooling output along one axis, as ``torch.nn.MaxPool2d`` computes it.

    ``floor`` (or ``ceil`` with ``ceil_mode``) of
    ``(size + 2*padding - dilation*(kernel-1) - 1) / stride``, plus one.  With
    ``ceil_mode`` a last window that would *start* in the right padding (or past
    it) is dropped: if ``(out-1)*stride >= size + padding`` then ``out -= 1``.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out
