import sys

from train.compress.cli import main

sys.exit(main())
