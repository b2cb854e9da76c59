"""``python -m minidl.kernels``: the route every kernel operation takes on this machine."""
from __future__ import annotations

import sys

from . import gemm, registry
from .. import threads


def main() -> int:
    print(f"CPU vector route of the GEMM micro-kernels: {gemm.isa() or 'none (NumPy BLAS)'}; "
          f"threads: {threads.get_num_threads()}")
    print(registry.format_listing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
