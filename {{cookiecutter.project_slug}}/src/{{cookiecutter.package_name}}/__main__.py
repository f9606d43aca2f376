"""`python -m {{ cookiecutter.package_name }}`: see `cli.py`."""

import sys

from .cli import main

sys.exit(main())
