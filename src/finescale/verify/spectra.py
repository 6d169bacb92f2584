"""Power spectra of 2-D fields: radially averaged (regional grids) and zonal (global grids), and
the grid length they are measured in. Comparing spectra (bands, ratios, slopes): ``bands``.

Normalisation (both spectra): the PSD ``E`` is a density in wavenumber, so that with
``window=None`` and ``truncate=False``::

    sum(E) * dk == mean over the grid of (f - trend)^2 - (mean of f - trend)^2

i.e. the variance of the detrended field (Parseval; the k = 0 term is left out). Units of
``E``: (field units)^2 per (cycles per unit length) = (field units)^2 * km when ``dx_km`` is
given, else (field units)^2 * grid lengths. ``dk`` is stored in ``E.attrs["dk"]``; all bins have
the same width. Wavenumbers are in cycles per km (``dx_km`` given) or cycles per grid length,
and the ``wavelength`` coordinate is 1 / wavenumber (km or grid lengths).

A window (default Hann for the radial spectrum) is scaled to unit mean square, so the windowed
PSD keeps the variance of a statistically homogeneous field on average, not exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from types import EllipsisType
from typing import Literal

import numpy as np
import scipy.sparse
import xarray as xr

ArrayLike = xr.DataArray | np.ndarray
Window = Literal["hann"] | None
Detrend = Literal["constant", "linear"] | None
AverageDims = str | Sequence[Hashable] | None | EllipsisType
EARTH_RADIUS_KM = 6371.0

__all__ = [
    "EARTH_RADIUS_KM",
    "grid_length_km",
    "radial_psd",
    "zonal_psd",
]


# --------------------------------------------------------------------------------------------
# Shared preprocessing
# --------------------------------------------------------------------------------------------


def _as_field(field: ArrayLike, y_dim: str, x_dim: str) -> xr.DataArray:
    """numpy input: the last two axes are (y, x)."""
    if isinstance(field, xr.DataArray):
        missing = {y_dim, x_dim} - set(field.dims)
        if missing:
            raise ValueError(f"field lacks dims {sorted(missing)}; its dims are {field.dims}")
        return field
    arr = np.asarray(field, dtype=float)
    if arr.ndim < 2:
        raise ValueError("a numpy field needs at least two axes (..., y, x)")
    return xr.DataArray(arr, dims=[*[f"dim_{i}" for i in range(arr.ndim - 2)], y_dim, x_dim])


def _detrend_2d(f: np.ndarray, detrend: Detrend) -> np.ndarray:
    """Remove the mean or a least-squares plane over the last two axes.

    Without it the mean (or a large-scale gradient, e.g. temperature over a mountain range)
    leaks through the window into the lowest wavenumbers.
    """
    if detrend is None:
        return f
    if detrend == "constant":
        return f - f.mean(axis=(-2, -1), keepdims=True)
    if detrend == "linear":
        ny, nx = f.shape[-2:]
        yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
        design = np.stack([np.ones(ny * nx), yy.ravel(), xx.ravel()], axis=1)
        flat = f.reshape(-1, ny * nx).T
        coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
        return f - (design @ coef).T.reshape(f.shape)
    raise ValueError(f"detrend must be 'constant', 'linear' or None, not {detrend!r}")


def _detrend_1d(f: np.ndarray, detrend: Detrend) -> np.ndarray:
    if detrend is None:
        return f
    if detrend == "constant":
        return f - f.mean(axis=-1, keepdims=True)
    if detrend == "linear":
        n = f.shape[-1]
        t = np.arange(n, dtype=float) - (n - 1) / 2.0
        slope = np.sum(f * t, axis=-1, keepdims=True) / np.sum(t * t)
        return f - f.mean(axis=-1, keepdims=True) - slope * t
    raise ValueError(f"detrend must be 'constant', 'linear' or None, not {detrend!r}")


def _taper(n: int, window: Window) -> np.ndarray:
    """1-D window scaled to unit mean square (so it keeps the variance on average)."""
    if window is None:
        return np.ones(n)
    if window == "hann":
        w = np.hanning(n)
        return w / np.sqrt(np.mean(w * w))
    raise ValueError(f"window must be 'hann' or None, not {window!r}")


def _average(
    psd: xr.DataArray, average_dims: AverageDims, keep: Sequence[Hashable]
) -> xr.DataArray:
    if average_dims is None:
        return psd
    if average_dims is ...:
        average_dims = [d for d in psd.dims if d not in keep]
    elif isinstance(average_dims, str):
        average_dims = [average_dims]
    return psd.mean(list(average_dims), keep_attrs=True)


def _psd_units(field: xr.DataArray, dx_km: float | None) -> str:
    units = field.attrs.get("units", "field units")
    length = "km" if dx_km is not None else "grid length"
    return f"({units})^2 {length}"


def _with_wavenumber_coords(
    psd: xr.DataArray, wavenumber: np.ndarray, dk: float, dx_km: float | None
) -> xr.DataArray:
    length = "km" if dx_km is not None else "grid length"
    psd = psd.assign_coords(
        wavenumber=("wavenumber", wavenumber, {"units": f"cycles per {length}"}),
        wavelength=("wavenumber", 1.0 / wavenumber, {"units": length}),
    )
    psd.attrs["dk"] = dk
    return psd


# --------------------------------------------------------------------------------------------
# Radially averaged PSD
# --------------------------------------------------------------------------------------------


def _radial_bins(ny: int, nx: int, dx: float, truncate: bool) -> tuple[np.ndarray, int, float]:
    """Annulus index of every 2-D FFT mode, the number of annuli, and their width dk.

    Annulus n (n >= 1) holds modes with |k| in [(n - 1/2) dk, (n + 1/2) dk), dk = 1/(min(nx, ny)
    dx), the coarser of the two axis resolutions. The k = 0 mode gets index 0 (dropped); modes
    with 0 < |k| < dk/2 (only on a non-square grid) join annulus 1 so no variance is lost.
    truncate: stop at the Nyquist wavenumber of the shorter axis (isotropic coverage); else
    keep the corner modes out to the diagonal.
    """
    dk = 1.0 / (min(nx, ny) * dx)
    ky = np.fft.fftfreq(ny, d=dx)
    kx = np.fft.fftfreq(nx, d=dx)
    k = np.hypot(ky[:, None], kx[None, :])
    index = np.floor(k / dk + 0.5).astype(int)
    index = np.where(k > 0, np.maximum(index, 1), 0)
    n_bins = min(nx, ny) // 2 if truncate else int(index.max())
    return index.ravel(), n_bins, dk


def _radial_psd_kernel(
    f: np.ndarray, dx: float, window: Window, detrend: Detrend, truncate: bool
) -> np.ndarray:
    """(..., ny, nx) -> (..., n_bins) radially averaged PSD; see the module docstring."""
    ny, nx = f.shape[-2:]
    taper = np.outer(_taper(ny, window), _taper(nx, window))
    spectrum = np.fft.fft2(_detrend_2d(f, detrend) * taper, axes=(-2, -1))
    # |F|^2 / N^2 sums to the mean square of the (windowed) field over all modes (Parseval)
    power = (spectrum.real**2 + spectrum.imag**2) / float(ny * nx) ** 2
    index, n_bins, dk = _radial_bins(ny, nx, dx, truncate)
    keep = (index >= 1) & (index <= n_bins)
    summing = scipy.sparse.csr_matrix(
        (np.ones(keep.sum()), (index[keep] - 1, np.flatnonzero(keep))), shape=(n_bins, ny * nx)
    )
    lead = f.shape[:-2]
    binned = summing @ power.reshape(-1, ny * nx).T  # (n_bins, prod(lead))
    return (binned.T / dk).reshape(*lead, n_bins)


def radial_psd(
    field: ArrayLike,
    *,
    dx_km: float | None = None,
    window: Window = "hann",
    detrend: Detrend = "constant",
    truncate: bool = True,
    average_dims: AverageDims = None,
    y_dim: str = "y",
    x_dim: str = "x",
) -> xr.DataArray:
    """Radially averaged power spectral density of 2-D fields over (y_dim, x_dim).

    Each 2-D slice is detrended (mean or plane), tapered by ``window`` (Hann by default, since
    regional fields are not periodic), Fourier transformed, and |F|^2 / N^2 / dk is summed over
    annuli of width dk = 1 / (min(nx, ny) dx) centred on wavenumbers n dk, n = 1, 2, ....
    With ``truncate`` (default) the last annulus is the Nyquist wavenumber of the shorter axis
    (wavelength 2 dx); ``truncate=False`` adds the corner modes so that, with ``window=None``,
    ``sum(psd) * dk`` equals the variance of the detrended field exactly (module docstring).
    Assumes equal grid spacing in y and x (``dx_km``, or one grid length when None).

    Args:
        field: DataArray with dims (..., y_dim, x_dim), or numpy (..., ny, nx). NaNs propagate
            (fill or crop masked regions first).
        average_dims: leading dims to average the PSD over (e.g. ("member", "time")); ``...``
            averages every leading dim; None keeps them.

    Returns:
        DataArray (..., wavenumber) with coords ``wavenumber`` and ``wavelength``; attrs
        ``dk`` (bin width) and ``units``.
    """
    field = _as_field(field, y_dim, x_dim)
    dx = 1.0 if dx_km is None else float(dx_km)
    ny, nx = field.sizes[y_dim], field.sizes[x_dim]
    _, n_bins, dk = _radial_bins(ny, nx, dx, truncate)
    data = field.chunk({y_dim: -1, x_dim: -1}) if field.chunks is not None else field
    psd = xr.apply_ufunc(
        _radial_psd_kernel,
        data,
        kwargs={"dx": dx, "window": window, "detrend": detrend, "truncate": truncate},
        input_core_dims=[[y_dim, x_dim]],
        output_core_dims=[["wavenumber"]],
        dask="parallelized",
        output_dtypes=[float],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": n_bins}},
    )
    psd.attrs = {
        "long_name": "radially averaged power spectral density",
        "units": _psd_units(field, dx_km),
    }
    psd = _with_wavenumber_coords(psd, dk * np.arange(1, n_bins + 1), dk, dx_km)
    return _average(psd, average_dims, keep=["wavenumber"])


# --------------------------------------------------------------------------------------------
# Zonal PSD (global regular grids)
# --------------------------------------------------------------------------------------------


def _zonal_psd_kernel(f: np.ndarray, dx: float, window: Window, detrend: Detrend) -> np.ndarray:
    """(..., nx) -> (..., nx // 2) one-sided PSD over zonal wavenumbers m = 1 .. nx // 2."""
    n = f.shape[-1]
    spectrum = np.fft.rfft(_detrend_1d(f, detrend) * _taper(n, window), axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2) / float(n) ** 2
    # fold the negative wavenumbers onto the positive ones; m = n/2 (n even) has no partner
    power[..., 1 : (n + 1) // 2] *= 2.0
    dk = 1.0 / (n * dx)
    return power[..., 1 : n // 2 + 1] / dk


def _row_latitude(field: xr.DataArray, lat: ArrayLike | None, y_dim: str, x_dim: str):
    """Latitude (degrees) of every row y, from ``lat`` or the field's ``lat`` coordinate."""
    if lat is None:
        if "lat" not in field.coords:
            return None
        lat = field.coords["lat"]
    if not isinstance(lat, xr.DataArray):
        lat = xr.DataArray(np.asarray(lat, dtype=float), dims=[y_dim])
    if x_dim in lat.dims:
        lat = lat.mean(x_dim)  # a regular grid has one latitude per row
    return lat


def zonal_psd(
    field: ArrayLike,
    *,
    dx_km: float | None = None,
    window: Window = None,
    detrend: Detrend = "constant",
    lat: ArrayLike | None = None,
    average_dims: AverageDims = None,
    y_dim: str = "y",
    x_dim: str = "x",
) -> xr.DataArray:
    """Zonal power spectral density along latitude circles (x), averaged over y with cos(lat).

    For global regular lat-lon grids: each row is a full, periodic latitude circle of nx
    points, so no window is needed (default None). Zonal wavenumber m (cycles per circle) maps
    to ``wavenumber`` = m / (nx dx) with dx = ``dx_km`` (the grid length on the equator,
    2 pi R / nx) or 1 grid length; the ``wavelength`` coordinate is therefore the equatorial
    wavelength of mode m (a circle at latitude phi is cos(phi) times shorter, which is why
    modes are matched by m, not by local wavelength). ``zonal_wavenumber`` (m) is a coordinate
    too. With ``window=None``, ``sum(psd) * dk`` equals the cos(lat)-weighted mean over rows of
    the variance along each circle.

    Args:
        field: (..., y_dim, x_dim) DataArray or numpy (..., ny, nx).
        lat: latitude of the rows in degrees (1-D over y, or 2-D lat(y, x)); default: the
            field's ``lat`` coordinate; rows get equal weight if neither exists.
        average_dims: as in :func:`radial_psd`.

    Returns:
        DataArray (..., wavenumber) over m = 1 .. nx // 2 (y averaged out), attrs ``dk``, units.
    """
    field = _as_field(field, y_dim, x_dim)
    dx = 1.0 if dx_km is None else float(dx_km)
    nx = field.sizes[x_dim]
    data = field.chunk({x_dim: -1}) if field.chunks is not None else field
    per_row = xr.apply_ufunc(
        _zonal_psd_kernel,
        data,
        kwargs={"dx": dx, "window": window, "detrend": detrend},
        input_core_dims=[[x_dim]],
        output_core_dims=[["wavenumber"]],
        dask="parallelized",
        output_dtypes=[float],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": nx // 2}},
    )
    row_lat = _row_latitude(field, lat, y_dim, x_dim)
    if row_lat is None:
        psd = per_row.mean(y_dim)
    else:
        # rows of a regular grid cover areas proportional to cos(lat)
        weights = np.clip(np.cos(np.deg2rad(row_lat)), 0.0, None)
        psd = (per_row * weights).sum(y_dim) / weights.sum(y_dim)
    psd = psd.drop_vars([c for c in psd.coords if c not in psd.dims], errors="ignore")
    psd.attrs = {
        "long_name": "zonal power spectral density (cos-latitude weighted mean)",
        "units": _psd_units(field, dx_km),
    }
    dk = 1.0 / (nx * dx)
    m = np.arange(1, nx // 2 + 1)
    psd = _with_wavenumber_coords(psd, m * dk, dk, dx_km)
    psd = psd.assign_coords(zonal_wavenumber=("wavenumber", m, {"units": "cycles per circle"}))
    return _average(psd, average_dims, keep=["wavenumber"])


# --------------------------------------------------------------------------------------------
# Grid geometry
# --------------------------------------------------------------------------------------------


def grid_length_km(lat: ArrayLike, lon: ArrayLike) -> tuple[float, float, float]:
    """Grid spacing (dy, dx, effective) in km of a grid with 2-D (or 1-D) lat/lon in degrees.

    dy, dx: median distance between neighbours along y and along x (local equirectangular
    distance, exact enough at grid scale, on regular and projected grids alike, on a sphere of
    radius ``EARTH_RADIUS_KM``). The effective grid length sqrt(dy * dx) is what the radial
    spectra use as their one spacing.
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat.ndim == 1 and lon.ndim == 1:
        lat, lon = np.meshgrid(lat, lon, indexing="ij")
    if lat.ndim != 2 or min(lat.shape) < 2:
        raise ValueError(
            f"grid_length_km needs a 2-D grid of at least 2 x 2 points, got {lat.shape}"
        )
    steps = []
    for axis in (0, 1):
        dlat = np.deg2rad(np.diff(lat, axis=axis))
        dlon = np.deg2rad((np.diff(lon, axis=axis) + 180.0) % 360.0 - 180.0)
        mid = 0.5 * (lat[1:, :] + lat[:-1, :]) if axis == 0 else 0.5 * (lat[:, 1:] + lat[:, :-1])
        distance = EARTH_RADIUS_KM * np.hypot(dlat, dlon * np.cos(np.deg2rad(mid)))
        steps.append(float(np.median(distance)))
    dy, dx = steps
    return dy, dx, float(np.sqrt(dy * dx))
