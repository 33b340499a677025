"""``python -m balpm`` runs the same typer app as the ``balpm`` console script."""
from balpm.cli import main

main()
