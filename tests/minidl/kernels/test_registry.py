"""The kernel registry (issue 12): one entry per operation, one switch to the references.

- ``use_reference`` / ``reference_kernels`` / ``MINIDL_KERNELS=reference`` send every
  operation to its reference: with every fast route replaced by one that raises, a CNN
  and an MLP still train a step (and without the switch the same step does reach a fast
  route, so the replacement is real).
- The switch gives the same numbers as the fast routes (to float32 rounding).
- ``listing()`` / ``python -m minidl.kernels`` name every operation and its route.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import kernels, nn, optim
from minidl.kernels import registry

ROOT = Path(__file__).resolve().parents[3]

EXPECTED = {"im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
            "avg_pool2d_backward", "conv2d_direct_forward", "conv2d_direct_weight_grad",
            "conv2d_direct_input_grad", "conv2d_direct_backward", "relu_forward",
            "relu_backward", "erf", "adam_update", "matmul", "cross_entropy", "conv2d_forward",
            "conv2d_backward"}


class FastRouteCalled(AssertionError):
    pass


# these tests start from the rule, also in a run under MINIDL_KERNELS=reference
pytestmark = pytest.mark.usefixtures("fast_kernels")


@pytest.fixture
def fast_routes_raise(monkeypatch):
    """Replace every fast route's function by one that raises ``FastRouteCalled``."""
    for op in registry.operations().values():
        for route in op.routes:
            module = importlib.import_module(route.module, "minidl.kernels")

            def boom(*args, _name=f"{op.name} ({route.name})", **kwargs):
                raise FastRouteCalled(_name)
            monkeypatch.setattr(module, route.attr, boom)


def _cnn():
    minidl.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 2 * 2, 32), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(32, 10))


def _train_step(model, x, y):
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    dx = model.backward(loss_fn.backward())
    opt.step()
    return loss, dx, [p.data.copy() for p in model.parameters()]


def _batch():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((16, 1, 12, 12)).astype(np.float32),
            rng.integers(0, 10, 16))


def test_every_operation_is_registered():
    assert EXPECTED <= set(registry.operations())
    for op in registry.operations().values():
        assert callable(op.reference) and op.routes, op.name


def test_the_switch_keeps_every_fast_route_out(fast_routes_raise):
    x, y = _batch()
    with pytest.raises(FastRouteCalled):        # the replacement is reached without the switch
        _train_step(_cnn(), x, y)
    with kernels.reference_kernels():
        assert kernels.reference_only()
        loss, dx, _ = _train_step(_cnn(), x, y)
        assert np.isfinite(loss) and dx.shape == x.shape
        eval_model = _cnn().eval()
        assert eval_model(x).shape == (16, 10)
    assert not kernels.reference_only()


def test_use_reference_returns_the_previous_setting_and_checks_its_argument():
    assert kernels.use_reference(True) is False
    try:
        assert kernels.reference_only()
        assert kernels.use_reference(False) is True
    finally:
        kernels.use_reference(False)
    with pytest.raises(TypeError, match="bool"):
        kernels.use_reference("yes")


def test_reference_and_fast_routes_train_alike():
    x, y = _batch()
    loss_fast, dx_fast, params_fast = _train_step(_cnn(), x, y)
    with kernels.reference_kernels():
        loss_ref, dx_ref, params_ref = _train_step(_cnn(), x, y)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(dx_fast, dx_ref, rtol=1e-4, atol=1e-6)
    for p, q in zip(params_fast, params_ref):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6)


def test_pick_names_the_route():
    a = np.ones((2, 3, 4, 4), np.float32)
    assert kernels.im2col.pick(a, 3, 1, 1).name == "numba"
    with kernels.reference_kernels():
        assert kernels.im2col.pick(a, 3, 1, 1) is None
    assert kernels.im2col.pick(a.tolist(), 3, 1, 1) is None     # not a NumPy array


def test_listing_covers_every_operation():
    rows = kernels.listing()
    assert {r["operation"] for r in rows} == set(registry.operations())
    for r in rows:
        assert r["route"] in ("reference", "numba", "implicit-gemm", "direct"), r
        assert r["reference"].startswith("minidl.kernels.")
    with kernels.reference_kernels():
        assert {r["route"] for r in kernels.listing()} == {"reference"}


def _python(code, **env):
    full = {k: v for k, v in os.environ.items() if k != registry.ENV_VAR}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=120, cwd=str(ROOT))


def test_environment_variable_is_read_at_import():
    code = "import minidl.kernels as k; print(k.reference_only())"
    assert _python(code).stdout.strip() == "False"
    assert _python(code, MINIDL_KERNELS="reference").stdout.strip() == "True"
    assert _python(code, MINIDL_KERNELS="fast").stdout.strip() == "False"
    bad = _python(code, MINIDL_KERNELS="refrence")
    assert bad.returncode != 0 and "MINIDL_KERNELS must be" in bad.stderr


def test_python_m_minidl_kernels_prints_the_table():
    out = _python("import runpy; runpy.run_module('minidl.kernels', run_name='__main__')",
                  MINIDL_KERNELS="reference")
    assert out.returncode == 0, out.stderr
    assert "MINIDL_KERNELS=reference" in out.stdout
    for name in EXPECTED:
        assert f"\n{name} " in out.stdout
