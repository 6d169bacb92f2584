"""Which members are polar-filtered on global grids, and which variables as vector components.

The filtering itself is :func:`finescale.data.grids.polar_filter`, applied member by member by
:meth:`finescale.generation.members.BlockDrawer.polar_filtered`.
"""

from __future__ import annotations

import numpy as np

from finescale.checkpoints import TrainedDownscaler
from finescale.config import SampleConfig
from finescale.data.units import UnitsError, parse_units

#: the polar filter's latitude (degrees) on global grids that reach beyond it, when not set
POLAR_FILTER_DEFAULT = 60.0


def polar_latitude(settings: SampleConfig, periodic_lon: bool, lat: np.ndarray) -> float | None:
    """The latitude (degrees) poleward of which members are polar-filtered; None: not filtered.

    ``settings.polar_filter_latitude`` where set (90: off); when None, ``POLAR_FILTER_DEFAULT``
    on a global grid (``periodic_lon``) whose HR latitudes ``lat`` reach beyond it, else off.
    Regional grids are never filtered: a latitude set for one is refused (ValueError).
    """
    chosen = settings.polar_filter_latitude
    if not periodic_lon:
        if chosen is not None and chosen < 90:
            raise ValueError(
                f"sample.polar_filter_latitude={chosen:g}: the polar filter is for "
                "global grids periodic in longitude, and this model's HR grid is "
                "regional (leave it unset)"
            )
        return None
    if chosen is None:
        reaches = np.nanmax(np.abs(lat)) > POLAR_FILTER_DEFAULT
        chosen = POLAR_FILTER_DEFAULT if reaches else None
    return None if chosen is None or chosen >= 90 else float(chosen)


def vector_components(settings: SampleConfig, loaded: TrainedDownscaler) -> list[str]:
    """The HR variables polar-filtered as components of a vector (their zonal wave 1 kept).

    ``settings.polar_filter_vectors`` where set; when None, the target variables whose units are
    a speed (length / time, e.g. 'm s-1', 'knots'), leaving out log1p-transformed ones: a rate
    such as 'mm/h' has a speed's dimensions but is never negative, so it is no vector component.
    Raises ValueError naming an unknown variable and the model's variables.
    """
    targets = list(loaded.layout.target_variables)
    chosen = settings.polar_filter_vectors
    if chosen is not None:
        unknown = [v for v in chosen if v not in targets]
        if unknown:
            raise ValueError(
                f"sample.polar_filter_vectors: {unknown} are not variables of this "
                f"model (its HR variables: {targets})"
            )
        return [v for v in targets if v in chosen]
    return [
        v
        for v in targets
        if loaded.stats[v].transform.kind == "none" and _is_speed(loaded.stats[v].units)
    ]


def _is_speed(units: str | None) -> bool:
    """Whether ``units`` are a speed (SI m s-1); units this package does not know are not."""
    try:
        return parse_units(units or "").dims == (1, 0, -1, 0)  # exponents of (m, kg, s, K)
    except UnitsError:
        return False
