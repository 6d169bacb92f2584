"""Quantile delta mapping (``qdm``, Cannon, Sobie & Murdock 2015, J. Climate 28, 6938-6959).

Quantile mapping (:mod:`.quantiles`) gives every forecast period the training distribution of
the truth at a point. Quantile delta mapping keeps the forecast period's own change instead: a
model value x_p(t) of the forecast period (the LR bilinearly interpolated to the HR grid, as in
QM), at its non-exceedance probability tau = F_p(x_p(t)) within the forecast period's own model
distribution at that HR grid point, becomes

* additive (temperature, winds, every variable that is not precipitation):
  ``y = F_o^-1(tau) + (x_p(t) - F_h^-1(tau))``;
* multiplicative (precipitation): ``y = F_o^-1(tau) * x_p(t) / F_h^-1(tau)``,

with F_h the model's and F_o the HR truth's distribution in the training period: exactly the
two tables of :func:`.quantiles.fit_quantile_mapping` (the same fit as QM, dry truth quantiles
set to 0). F_p is a table of the same ``n_quantiles`` probabilities over the forecast period,
computed per point from the whole period before the mapping runs lazily over time; tau is the
value's position in it (linear between quantiles, mid-rank for ties), and F_o, F_h are read at
the same position. x_p lies within its own period's range, so no extrapolation is needed.

Zeros and trace amounts of precipitation. Cannon et al. treat values below a trace threshold as
zeros: before the mapping they replace them by small uniform random values (below half the
trace in their R package MBC), so ties are broken and the ratio is defined; after it, values
below the trace are set to 0. MBC also limits the ratio x_p / F_h^-1(tau) to 2 where
F_h^-1(tau) is below 10 x the trace, where a small denominator would blow a drizzle up. We follow
them with the wet threshold as the trace (:data:`.quantiles.WET_THRESHOLD`, 0.01 mm/h) and the
same limit (:data:`RATIO_MAX` where F_h^-1(tau) < :data:`RATIO_MAX_TRACE` x the trace, also
where F_h^-1(tau) is 0), but without the random values, so the baseline is deterministic:
tied zeros take the middle rank (as in QM), an input below the trace gives exactly 0 (where
the truth is wetter than the model at a dry model quantile, the random values could have
given rain; LR interpolated to a point is wet more often than the point, so this is rare),
and outputs below the trace are set to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from finescale.baselines.quantiles import (
    N_QUANTILES,
    QuantileMapping,
    fit_quantile_mapping,
    fit_table,
    read_table,
    table_position,
)

__all__ = ["RATIO_MAX", "RATIO_MAX_TRACE", "QuantileDeltaMapping", "fit_quantile_delta_mapping"]

#: Largest multiplicative change x_p / F_h^-1(tau) where F_h^-1(tau) is small (Cannon et al.).
RATIO_MAX = 2.0
#: ... small meaning below this many wet thresholds.
RATIO_MAX_TRACE = 10.0


def _delta_map_block(
    x: np.ndarray,
    projection: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    threshold: float | None,
) -> np.ndarray:
    """apply_ufunc kernel: x (..., *space), tables (*space, K) -> QDM of x, float32.

    projection: F_p, the table of the forecast period's model values; source: F_h, the
    training period's; target: F_o, the truth's in training. threshold: for precipitation, the
    wet threshold (multiplicative, zeros as in the module docstring); None: additive.
    """
    n_points = int(np.prod(source.shape[:-1]))
    flat_x = x.reshape(-1, n_points).astype(np.float64)
    p, h, o = (table.reshape(n_points, -1).T for table in (projection, source, target))
    bad = (
        np.isnan(flat_x)
        | np.isnan(p).any(axis=0)
        | np.isnan(h).any(axis=0)
        | np.isnan(o).any(axis=0)
    )
    position, _, _ = table_position(flat_x, p)  # tau = position / (K - 1)
    model, truth = read_table(h, position), read_table(o, position)
    if threshold is None:
        y = truth + (flat_x - model)
    else:
        ratio = np.divide(flat_x, model, out=np.full_like(flat_x, RATIO_MAX), where=model > 0)
        ratio = np.where(model < RATIO_MAX_TRACE * threshold, np.minimum(ratio, RATIO_MAX), ratio)
        y = truth * ratio
        y = np.where((y < threshold) | (flat_x < threshold), 0.0, y)
    return np.where(bad, np.nan, y).reshape(x.shape).astype(np.float32)


@dataclass(frozen=True)
class QuantileDeltaMapping:
    """Fitted quantile delta mapping: the training tables of a :class:`QuantileMapping` (its
    ``source`` is F_h, its ``target`` F_o), applied to a forecast period with that period's own
    model distribution F_p."""

    mapping: QuantileMapping

    @property
    def variables(self) -> list[str]:
        return self.mapping.variables

    def apply(self, x: xr.Dataset) -> xr.Dataset:
        """QDM of the forecast period's model values ``x`` (time, *space) per variable.

        x: the whole forecast period (F_p is taken from it: a different period gives other
            values), on the grid and in the units of the fit, the same variables (others are
            left out). F_p is computed here, a few rows of points at a time; the mapping stays
            lazy over time where ``x`` is dask-backed. Returns float32 with the attrs of ``x``.
        """
        return xr.Dataset(
            {name: self._apply_one(name, x.get(name)) for name in self.variables}, attrs=x.attrs
        )

    def _apply_one(self, name: str, da: xr.DataArray | None) -> xr.DataArray:
        table_dims = self.mapping.table_dims(name, da)
        source, target = self.mapping.source[name], self.mapping.target[name]
        projection = fit_table(da, source.sizes["quantile"])
        precipitation = name in self.mapping.precipitation
        tables = [[*table_dims, "quantile"]] * 3
        mapped = xr.apply_ufunc(
            _delta_map_block,
            da,
            projection,
            source,
            target,
            kwargs={"threshold": self.mapping.thresholds.get(name) if precipitation else None},
            input_core_dims=[table_dims, *tables],
            output_core_dims=[table_dims],
            dask="parallelized",
            output_dtypes=[np.float32],
        )
        return mapped.transpose(*da.dims).assign_attrs(da.attrs).rename(name)


def fit_quantile_delta_mapping(
    source: xr.Dataset,
    target: xr.Dataset,
    n_quantiles: int = N_QUANTILES,
    fit_period: str = "",
) -> QuantileDeltaMapping:
    """Fit quantile delta mapping of model values ``source`` onto the truth ``target``.

    Arguments as :func:`.quantiles.fit_quantile_mapping` (the training period only, (time,
    *space), same grid and times); the fit is the same, only its use differs.
    """
    return QuantileDeltaMapping(fit_quantile_mapping(source, target, n_quantiles, fit_period))
