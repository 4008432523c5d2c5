"""``python -m aims`` is the ``aims`` command."""

from aims.cli import main

main()
