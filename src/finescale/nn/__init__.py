"""Neural-network building blocks (no training logic, no data files)."""

from finescale.nn.unet import UNet, UNetSettings, count_parameters

__all__ = ["UNet", "UNetSettings", "count_parameters"]
