"""regionflow: multi-region batch-file processing that loses no file and processes none twice."""

__version__ = "0.1.0"
