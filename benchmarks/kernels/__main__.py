"""``python -m benchmarks.kernels``: see ``benchmarks.kernels``."""
from .cli import main

raise SystemExit(main())
