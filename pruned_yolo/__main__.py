"""`python -m pruned_yolo ...` (also what `torchrun -m pruned_yolo train ...` runs)."""

import sys

from .cli.main import main

sys.exit(main())
