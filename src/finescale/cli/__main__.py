"""``python -m finescale.cli`` (as torchrun runs it): the ``finescale`` command."""

from finescale.cli import app

app()
