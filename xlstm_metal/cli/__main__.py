"""``python -m xlstm_metal.cli``: the command line."""
import sys

from . import main

sys.exit(main())
