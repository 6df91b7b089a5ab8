"""``python -m supervit`` runs the command line."""

from supervit.cli import main

main()
