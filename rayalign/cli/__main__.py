"""`python -m rayalign.cli`: the same as the `rayalign` command."""

import sys

from rayalign.cli import main

sys.exit(main())
