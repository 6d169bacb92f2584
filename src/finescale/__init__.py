"""finescale: calibrated fine-scale ensembles from coarse atmospheric fields."""

__version__ = "0.1.0"
