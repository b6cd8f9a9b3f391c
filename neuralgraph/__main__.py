"""``python -m neuralgraph ...`` is the ``neuralgraph`` command (also ``torchrun -m neuralgraph ...``)."""
import sys

from .cli import entry

sys.exit(entry())
