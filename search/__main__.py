"""``python -m mlpsearch``: the same as the ``mlpsearch`` command."""

import sys

from mlpsearch.cli import main

sys.exit(main())
