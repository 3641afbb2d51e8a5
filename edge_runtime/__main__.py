"""`python -m edge_runtime`: see `cli.py`."""

import os
import sys

# One detector per core: BLAS worker threads only contend for that core (a 40x257 mel matmul ran 6-20x slower
# with OpenBLAS's default threads than with one). Set before numpy is first imported; a user's value wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from .cli import main  # noqa: E402

sys.exit(main())
