"""`python -m convert`: see `cli.py`."""

import sys

from convert.cli import main

sys.exit(main())
