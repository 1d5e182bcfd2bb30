"""``python -m loop.monkey [--no-NAME ...] (script.py | -m module) [args...]``: run a program
after :func:`loop.monkey.patch_all`."""
import sys

from loop.monkey import main

sys.exit(main())
