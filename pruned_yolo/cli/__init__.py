"""Command-line interface: a thin layer of argument parsing over the Python API."""
