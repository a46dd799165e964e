"""`python -m regionflow.cli`: the same as the `regionflow` console script."""

from regionflow.cli import main

main()
