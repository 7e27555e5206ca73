"""``python -m kgtest`` (also what ``torchrun -m kgtest`` runs)."""

import sys

from kgtest.cli import main

sys.exit(main())
