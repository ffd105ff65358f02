"""The test suite's settings: the project's own, in development mode.

DEBUG is off unless set (playground/settings.py), and pytest-django loads the
settings before any conftest.py runs, so development is asked for here, in
the module pytest-django loads (pyproject.toml). A DEBUG set in the real
environment still wins.
"""

import os

os.environ.setdefault("DEBUG", "true")

from playground.settings import *  # noqa: F403
