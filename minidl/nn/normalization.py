r"""Normalization layers: BatchNorm1d, BatchNorm2d and LayerNorm.

The math lives in kernel operations (``minidl.kernels``): ``batch_norm_forward``/
``batch_norm_backward`` (``kernels/batchnorm.py``) and ``layer_norm_forward``/
``layer_norm_backward`` (``kernels/layernorm.py``), each a NumPy reference beside a
fused Numba twin; the classes hold the parameters, the running statistics (buffers) and
what backward needs.

Both layers normalise a group of values :math:`x_1..x_n` to zero mean and unit
variance, then scale and shift:

.. math::
    \mu = \frac1n \sum_i x_i, \qquad
    \sigma^2 = \frac1n \sum_i (x_i - \mu)^2, \qquad
    \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
    y_i = \gamma \hat x_i + \beta

BatchNorm's group is one channel over the batch and every position (``n = N*L`` or
``N*H*W``); LayerNorm's group is one sample's last dimensions.

Backward (the compact form).  Write :math:`r = 1/\sqrt{\sigma^2+\epsilon}` and
:math:`g_i = \partial L/\partial \hat x_i = \gamma\, \partial L/\partial y_i`.
Since :math:`\partial\mu/\partial x_j = 1/n` and
:math:`\partial\sigma^2/\partial x_j = \frac2n (x_j - \mu)`,

.. math::
    \frac{\partial \hat x_i}{\partial x_j}
      = r\Big(\delta_{ij} - \frac1n\Big) - (x_i-\mu)\, r^3 \frac1n (x_j-\mu)
      = \frac rn \big(n\,\delta_{ij} - 1 - \hat x_i \hat x_j\big)

so

.. math::
    \frac{\partial L}{\partial x_j} = \sum_i g_i \frac{\partial \hat x_i}{\partial x_j}
      = \frac rn \Big(n\, g_j - \sum_i g_i - \hat x_j \sum_i g_i \hat x_i\Big).

With a per-group :math:`\gamma` (BatchNorm) the sums are
:math:`\gamma\,\partial L/\partial\beta` and :math:`\gamma\,\partial L/\partial\gamma`:

.. math::
    \frac{\partial L}{\partial \beta} = \sum_i \frac{\partial L}{\partial y_i}, \qquad
    \frac{\partial L}{\partial \gamma} = \sum_i \frac{\partial L}{\partial y_i}\hat x_i, \qquad
    \frac{\partial L}{\partial x_j} = \frac{\gamma r}{n}\Big(n \frac{\partial L}{\partial y_j}
      - \frac{\partial L}{\partial \beta} - \hat x_j \frac{\partial L}{\partial \gamma}\Big).

When the statistics are constants (BatchNorm in eval mode, using the running
statistics), :math:`\mu` and :math:`\sigma^2` do not depend on ``x`` and
:math:`\partial L/\partial x_j = \gamma r\, \partial L/\partial y_j`.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, backend, kernels
from .module import Module, backward_before_forward, empty_batch_backward
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


# -- the layers ------------------------------------------------------------------------------
class _BatchNorm(Module):
    r"""Shared by BatchNorm1d and BatchNorm2d (see :class:`BatchNorm2d` for the whole story)."""

    _ranks: tuple = ()
    _rank_text = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, bias: bool = True):
        super().__init__()
        owner = type(self).__name__
        self.num_features = _checks.positive_int(owner, "num_features", num_features)
        self.eps = _checks.real(owner, "eps", eps, 0, what="a non-negative number")
        self.momentum = None if momentum is None else _checks.real(
            owner, "momentum", momentum, 0, 1,
            what="a number in [0, 1] or None (cumulative average)")
        self.affine = _checks.boolean(owner, "affine", affine)
        self.track_running_stats = _checks.boolean(owner, "track_running_stats",
                                                   track_running_stats)
        _checks.boolean(owner, "bias", bias)
        c = self.num_features
        if affine:
            self.weight = Parameter(np.ones(c, np.float32))
            if bias:
                self.bias = Parameter(np.zeros(c, np.float32))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, np.float32))
            self.register_buffer("running_var", np.ones(c, np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._cache = None

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked (torch's start)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        """The running statistics reset; weight 1 and bias 0, as in torch."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def _float_dtype(self):
        """The dtype the module computes in, or None when it holds no float array."""
        for a in (self.weight, self.running_mean):
            if a is not None:
                return a.dtype
        return None

    def _check_input(self, x):
        owner = type(self).__name__
        _checks.float_array(owner, x)
        if x.ndim not in self._ranks:
            raise ValueError(f"{owner}: expected {self._rank_text} input (got {x.ndim}D input "
                             f"of shape {tuple(x.shape)})")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{owner}: expected {self.num_features} channels at axis 1 "
                             f"(num_features={self.num_features}), got input of shape "
                             f"{tuple(x.shape)}")
        dtype = self._float_dtype()
        if dtype is not None and x.dtype != dtype:
            hint = ".double()" if x.dtype == np.float64 else ".float()"
            raise ValueError(f"{owner}: input dtype {x.dtype} does not match the module's dtype "
                             f"{dtype}; convert the module with {hint} (or the input with "
                             f".astype({dtype.name}))")

    def forward(self, x):
        owner = type(self).__name__
        self._check_input(x)
        n_batch, c = x.shape[0], x.shape[1]
        positions = math.prod(x.shape[2:])
        n = n_batch * positions
        # torch: the batch statistics are used in training, and always when no running
        # statistics are kept
        batch_stats = self.training or not self.track_running_stats
        if batch_stats and n == 1:
            raise ValueError(f"{owner}: Expected more than 1 value per channel when training, "
                             f"got input size {tuple(x.shape)}")
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
        weight = None if self.weight is None else self.weight.data
        bias = None if self.bias is None else self.bias.data
        if n == 0:                       # an empty batch: nothing to normalise or average
            self._cache = (x, None, None, batch_stats)
            return backend.xp(x).zeros(x.shape, dtype=x.dtype)
        x3 = x.reshape(n_batch, c, positions)
        if batch_stats:
            y, x_hat, invstd, mean, var = kernels.batch_norm_forward(x3, weight, bias, self.eps)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, n)
        else:
            y, x_hat, invstd, _, _ = kernels.batch_norm_forward(
                x3, weight, bias, self.eps, self.running_mean, self.running_var)
        self._cache = (x, x_hat, invstd, batch_stats)
        return y.reshape(x.shape)

    def _update_running_stats(self, mean, var, n: int) -> None:
        r"""``running = (1 - f) running + f batch`` with ``f = momentum``, or ``1/t`` for the
        cumulative average (``momentum=None``, ``t = num_batches_tracked``); the variance
        averaged is the unbiased one, :math:`\sigma^2 n/(n-1)`."""
        if self.momentum is None:
            # 1/t from the counter where it is (no copy to the host on a GPU), rounded to
            # the statistics' dtype as a Python float would be
            t = self.num_batches_tracked
            f, keep = (1.0 / t).astype(mean.dtype), (1.0 - 1.0 / t).astype(mean.dtype)
        else:
            f, keep = self.momentum, 1.0 - self.momentum
        self.running_mean = f * mean + keep * self.running_mean
        self.running_var = f * (var * (n / (n - 1))) + keep * self.running_var

    def backward(self, dout):
        """Accumulate dL/dweight and dL/dbias; return dL/dx (None when ``needs_input_grad``
        is False).  See the module docstring for the derivation."""
        owner = type(self).__name__
        if self._cache is None:
            raise backward_before_forward(owner)
        x, x_hat, invstd, batch_stats = self._cache
        _checks.dout(owner, dout, x.shape, x.dtype)
        if x_hat is None:
            return empty_batch_backward(self, x)
        d3 = dout.reshape(x_hat.shape)
        weight = None if self.weight is None else self.weight.data
        dx, dweight, dbias = kernels.batch_norm_backward(d3, x_hat, invstd, weight, batch_stats,
                                                         self.needs_input_grad)
        if self.weight is not None:
            self.weight.accumulate_grad(dweight, owned=True)
        if self.bias is not None:
            self.bias.accumulate_grad(dbias, owned=True)
        return None if dx is None else dx.reshape(x.shape)

    def _convert_extra(self, fn) -> None:
        self._cache = None

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    r"""Batch normalization over a 2-D ``(N, C)`` or 3-D ``(N, C, L)`` input.

    Each channel ``c`` is normalised with statistics over the batch (and ``L``):
    ``n = N`` or ``N*L`` values.  Everything else is as in :class:`BatchNorm2d`.

    Matches ``torch.nn.BatchNorm1d``.
    """

    _ranks = (2, 3)
    _rank_text = "2D or 3D"


class BatchNorm2d(_BatchNorm):
    r"""Batch normalization over a 4-D input ``(N, C, H, W)``, per channel.

    Parameters
    ----------
    num_features : int
        ``C``, the number of channels.
    eps : float
        Added to the variance before the square root (default 1e-5).
    momentum : float or None
        Weight of the new batch in the running statistics (default 0.1); None makes
        them the cumulative average of every batch so far.
    affine : bool
        Learn ``weight`` (:math:`\gamma`, starts at 1) and ``bias`` (:math:`\beta`,
        starts at 0), each ``(C,)``.  ``bias=False`` (keyword) keeps only the weight.
    track_running_stats : bool
        Keep the buffers ``running_mean`` (starts at 0), ``running_var`` (1) and
        ``num_batches_tracked`` (int64, 0).  Without them every mode uses the batch
        statistics.

    Forward (training)
    ------------------
    With ``n = N*H*W`` values per channel, the batch mean :math:`\mu` and the
    *biased* variance :math:`\sigma^2 = \frac1n\sum (x-\mu)^2`:

    .. math::
        y = \gamma \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    and then ``num_batches_tracked += 1`` and, with ``f = momentum`` (or
    ``1/num_batches_tracked`` when momentum is None),

    .. math::
        \text{running\_mean} \leftarrow (1-f)\,\text{running\_mean} + f\mu, \qquad
        \text{running\_var} \leftarrow (1-f)\,\text{running\_var} + f\,\frac{n}{n-1}\sigma^2

    (the *unbiased* variance).  Training needs more than one value per channel
    (``n > 1``), as in torch.

    Forward (eval): the same formula with ``running_mean`` and ``running_var`` in place
    of :math:`\mu, \sigma^2` (the batch statistics when ``track_running_stats=False``).

    Backward: in the compact form derived in the module docstring,
    :math:`\frac{\partial L}{\partial x} = \frac{\gamma r}{n}(n\,\partial_y L -
    \partial_\beta L - \hat x\, \partial_\gamma L)` with batch statistics, and
    :math:`\gamma r\, \partial_y L` with running ones.

    Shapes: ``(N, C, H, W)`` -> same.

    Matches ``torch.nn.BatchNorm2d`` (arguments, defaults, state_dict keys, running
    statistics, train/eval behaviour, the error for one value per channel).  An empty
    batch gives an empty output, counts in ``num_batches_tracked`` and leaves the
    running statistics as they are, as in torch.  The input's dtype must be the
    module's (float32 unless converted with ``.double()``), as in torch.
    """

    _ranks = (4,)
    _rank_text = "4D"


class LayerNorm(Module):
    r"""Layer normalization over the last ``len(normalized_shape)`` dimensions.

    Parameters
    ----------
    normalized_shape : int or tuple of ints
        The trailing shape normalised together (an int means ``(int,)``).
    eps : float
        Added to the variance before the square root (default 1e-5).
    elementwise_affine : bool
        Learn ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape``.
    bias : bool
        With ``elementwise_affine``: whether to learn the bias.

    Forward: for each sample (each index of the leading dimensions), with the mean
    :math:`\mu` and biased variance :math:`\sigma^2` of its ``K = prod(normalized_shape)``
    trailing values,

    .. math:: y = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    Backward (module docstring): with :math:`g = \gamma \odot \partial L/\partial y` and
    row means written with a bar,
    :math:`\partial L/\partial x = r(g - \bar g - \hat x\, \overline{g\hat x})`;
    :math:`\partial L/\partial\gamma` and :math:`\partial L/\partial\beta` are
    :math:`\partial L/\partial y\,\hat x` and :math:`\partial L/\partial y` summed over the
    leading dimensions.

    Shapes: ``(*, *normalized_shape)`` -> same.

    Matches ``torch.nn.LayerNorm`` (arguments, defaults, state_dict keys).
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        super().__init__()
        self.normalized_shape = _checks.shape("LayerNorm", "normalized_shape", normalized_shape)
        self.eps = _checks.real("LayerNorm", "eps", eps, 0, what="a non-negative number")
        self.elementwise_affine = _checks.boolean("LayerNorm", "elementwise_affine",
                                                  elementwise_affine)
        _checks.boolean("LayerNorm", "bias", bias)
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, np.float32))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, np.float32))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self._cache = None

    def reset_parameters(self) -> None:
        """weight 1, bias 0, as in torch."""
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, x):
        _checks.float_array("LayerNorm", x)
        d = len(self.normalized_shape)
        if x.ndim < d or tuple(x.shape[x.ndim - d:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input of shape (*, "
                             f"{', '.join(map(str, self.normalized_shape))}) "
                             f"(normalized_shape={self.normalized_shape}), got {tuple(x.shape)}")
        if self.weight is not None and x.dtype != self.weight.dtype:
            hint = ".double()" if x.dtype == np.float64 else ".float()"
            raise ValueError(f"LayerNorm: input dtype {x.dtype} does not match parameter dtype "
                             f"{self.weight.dtype}; convert the module with {hint} (or the "
                             f"input with .astype({self.weight.dtype.name}))")
        k = math.prod(self.normalized_shape)
        x2 = x.reshape(math.prod(x.shape[:x.ndim - d]), k)
        weight = None if self.weight is None else self.weight.data.reshape(k)
        bias = None if self.bias is None else self.bias.data.reshape(k)
        y, x_hat, invstd = kernels.layer_norm_forward(x2, weight, bias, self.eps)
        self._cache = (x.shape, x.dtype, x_hat, invstd)
        return y.reshape(x.shape)

    def backward(self, dout):
        """Accumulate dL/dweight and dL/dbias; return dL/dx (None when ``needs_input_grad``
        is False)."""
        if self._cache is None:
            raise backward_before_forward("LayerNorm")
        shape, dtype, x_hat, invstd = self._cache
        _checks.dout("LayerNorm", dout, shape, dtype)
        k = x_hat.shape[1]
        weight = None if self.weight is None else self.weight.data.reshape(k)
        dx, dweight, dbias = kernels.layer_norm_backward(dout.reshape(x_hat.shape), x_hat,
                                                         invstd, weight, self.needs_input_grad)
        if self.weight is not None:
            self.weight.accumulate_grad(dweight.reshape(self.normalized_shape), owned=True)
        if self.bias is not None:
            self.bias.accumulate_grad(dbias.reshape(self.normalized_shape), owned=True)
        return None if dx is None else dx.reshape(shape)

    def _convert_extra(self, fn) -> None:
        self._cache = None

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")
