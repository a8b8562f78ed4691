"""`python -m xlstm_metal`: the command line."""
import sys

from xlstm_metal.cli import main

sys.exit(main())
