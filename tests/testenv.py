"""Where the tests find the repository, the reference data and the regionflow command."""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DATA = os.path.join(os.path.dirname(REPO), "shared", "reference-data")
REGIONFLOW = os.path.join(os.path.dirname(sys.executable), "regionflow")  # the venv's console script
