"""What data: sources, pairing, grids, units, transforms and the synthetic Alps world."""
