"""``python -m hostmux_client``: see :mod:`hostmux_client.cli`."""

import sys

from .cli import main

sys.exit(main())
