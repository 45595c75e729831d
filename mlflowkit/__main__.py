"""``python -m mlflowkit``: the same command as ``mlflowkit``."""

from mlflowkit.cli import main

main()
