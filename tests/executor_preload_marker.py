"""A module a worker preloads in the executor tests: importing it leaves a marker (executorkit.note_import)."""

import time

from executorkit import note_import

time.sleep(0.3)  # a preload that takes a while, as polars' import does
note_import()
