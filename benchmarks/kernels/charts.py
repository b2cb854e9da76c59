"""The kernel benchmark's charts: time per call, one PNG per thread count and family."""
from __future__ import annotations

from pathlib import Path

from .. import common


def charts(args, rows) -> list[Path]:
    """One chart per thread count and family (convolution; pooling, linear and Adam)."""
    def is_conv(op):
        return "conv" in op.lower() or "col" in op
    paths = []
    for threads in args.threads:
        sel = [r for r in rows if r["threads"] == threads]
        # the real shapes; --quick has only the small one
        sel = [r for r in sel if not r["shape"].startswith("small")] or sel
        for family, title, keep in (("conv", "im2col, col2im, convolution", is_conv),
                                    ("other", "pooling, linear, Adam",
                                     lambda op: not is_conv(op))):
            part = [r for r in sel if keep(r["op"])]
            if not part:
                continue
            groups = [f"{r['op']}\n{r['shape'][:30]}" for r in part]
            series = {}
            for impl in ("numpy", "numba", "minidl", "torch", "cupy"):
                vals = [(r["impls"][impl]["median"] * 1e6 if r["impls"][impl] else None)
                        for r in part]
                if any(v is not None for v in vals):
                    series[impl] = vals
            paths.append(common.bar_chart(
                Path(args.out) / f"kernels_t{threads}_{family}.png",
                f"{title}: time per call, {threads} thread(s) (lower is better)",
                groups, series, "µs per call", log=True))
    return paths
