"""``python -m benchmarks.roofline``: see ``benchmarks.roofline.cli``."""
from .cli import main

raise SystemExit(main())
