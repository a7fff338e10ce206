"""``python -m weave_cli`` runs the ``weave`` CLI."""

from weave_cli.main import run

run()
