"""`python -m edgefer.cli` runs the edgefer command."""

from edgefer.cli import main

main()
