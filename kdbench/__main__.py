"""``python -m kdbench`` runs the command-line interface."""

from kdbench.cli import main

main()
