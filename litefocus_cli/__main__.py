"""``python -m litefocus_cli ...`` is the ``litefocus`` command."""

import sys

from .main import main

sys.exit(main())
