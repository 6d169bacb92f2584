"""The version of finescale, written into every output it makes (a room of its own: every
other room may import it, and the package root hands it on)."""

__version__ = "0.1.0"
