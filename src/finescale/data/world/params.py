"""Parameters of the Alps world, each with its physical meaning, and the named presets."""

from __future__ import annotations

from pydantic import Field

from finescale.config import Settings


class WorldParams(Settings):
    """Everything that defines an Alps world; together with the seed it fixes every value."""

    # grids and period
    hr_resolution_deg: float = Field(
        0.05, gt=0, description="HR grid spacing in degrees (a multiple of the DEM's)."
    )
    ratio: int = Field(8, ge=2, description="LR grid spacing / HR grid spacing.")
    lat_range: tuple[float, float] | None = Field(
        None, description="Sub-domain (south, north); None: whole DEM."
    )
    lon_range: tuple[float, float] | None = Field(
        None, description="Sub-domain (west, east); None: whole DEM."
    )
    start: str = Field("2021-01-01T00:00", description="First time (UTC, hourly steps).")
    days: float = Field(60.0, gt=0, description="Length of the simulated period in days.")
    chunk_hours: int = Field(24, ge=1, description="Hours computed and written per Zarr chunk.")

    # large-scale state
    n_modes: int = Field(32, ge=4, description="Fourier modes per large-scale anomaly field.")
    wavelength_km: tuple[float, float] = Field(
        (500.0, 3000.0), description="Range of large-scale wavelengths."
    )
    anomaly_timescale_h: float = Field(
        72.0, gt=0, description="e-folding time of large-scale anomalies."
    )
    mean_wind_850: float = Field(7.0, description="Annual-mean westerly wind at 850 hPa (m/s).")
    mean_wind_seasonal: float = Field(3.0, description="Extra winter westerly at 850 hPa (m/s).")
    mean_wind_std: float = Field(4.0, ge=0, description="Std of slow mean-wind fluctuations (m/s).")
    mean_wind_timescale_h: float = Field(
        96.0, gt=0, description="e-folding time of mean-wind fluctuations."
    )
    shear_700: float = Field(4.0, description="Westerly shear 850 -> 700 hPa (m/s).")
    shear_500: float = Field(10.0, description="Westerly shear 850 -> 500 hPa (m/s).")
    eddy_wind_std: float = Field(
        5.0, ge=0, description="Std of the eddy (streamfunction) wind at 850 hPa (m/s)."
    )
    t850_mean: float = Field(277.0, description="Annual-mean 850 hPa temperature at 46N (K).")
    t850_seasonal: float = Field(
        8.0, ge=0, description="Seasonal half-range of 850 hPa temperature (K)."
    )
    t_anomaly_std: float = Field(
        4.0, ge=0, description="Std of large-scale temperature anomalies (K)."
    )
    lapse_env: float = Field(
        6.0, gt=0, description="Mean 850-700 hPa lapse rate (K/km); 700-500 is 0.8 more."
    )
    lapse_anomaly_std: float = Field(
        0.8, ge=0, description="Std of lapse-rate anomalies (K/km): drives instability."
    )
    rh_logit_mean: float = Field(0.3, description="Mean logit of relative humidity.")
    rh_logit_std: float = Field(1.0, ge=0, description="Std of logit relative-humidity anomalies.")
    diurnal_amplitude: tuple[float, float] = Field(
        (2.5, 5.0),
        description="Near-surface diurnal temperature amplitude in winter and summer (K).",
    )

    # surface
    lapse_rate: float = Field(
        6.5, gt=0, description="Near-surface temperature lapse rate over the terrain (K/km)."
    )
    cold_pool_k_per_km: float = Field(
        6.0, ge=0, description="Night-time cooling per km of valley depth under calm wind (K/km)."
    )
    cold_pool_wind: float = Field(
        4.0, gt=0, description="850 hPa wind speed (m/s) over which cold pools decay by e."
    )
    valley_scale_km: float = Field(
        8.0, gt=0, description="Smoothing scale defining ridges and valleys (km)."
    )
    wind_scale_km: float = Field(
        5.0, gt=0, description="Smoothing of the terrain the 10 m wind responds to (km)."
    )
    surface_wind_factor: float = Field(
        0.65, gt=0, description="10 m wind / 850 hPa wind over flat terrain."
    )
    ridge_speedup: float = Field(
        0.35, ge=0, description="Fractional wind speed-up over ridges (slow-down in valleys)."
    )
    deflection: float = Field(
        0.6, ge=0, le=1, description="Fraction of the upslope wind deflected along steep slopes."
    )
    t2m_noise_std: float = Field(
        0.6, ge=0, description="Std of small-scale 2 m temperature fluctuations (K)."
    )
    wind_noise_std: tuple[float, float] = Field(
        (0.4, 0.15),
        description=(
            "Small-scale wind fluctuation std: constant (m/s) + fraction of the wind speed."
        ),
    )
    noise_timescale_h: float = Field(
        1.5, gt=0, description="e-folding time of small-scale fluctuations."
    )
    noise_slope: float = Field(
        -5.0 / 3.0, description="Slope of the 1-D energy spectrum of the small scales."
    )

    # precipitation
    moist_stability: float = Field(
        0.005, gt=0, description="Moist Brunt-Vaisala frequency N_m (1/s), Smith-Barstad."
    )
    conversion_time_s: float = Field(
        1000.0, gt=0, description="Cloud conversion time tau_c (s), Smith-Barstad."
    )
    fallout_time_s: float = Field(
        1000.0, gt=0, description="Hydrometeor fallout time tau_f (s), Smith-Barstad."
    )
    background_rate: float = Field(
        1.5, ge=0, description="Synoptic precipitation rate at saturation (mm/h)."
    )
    stratiform_noise_std: float = Field(
        0.6, ge=0, description="Std of log-normal small-scale stratiform modulation."
    )
    cell_rate: float = Field(
        3e-4, ge=0, description="Peak convective cell birth rate (cells per km^2 per hour)."
    )
    cell_kindex_threshold: float = Field(
        30.0, description="K-index (K) at which the cell rate is half its peak."
    )
    cell_intensity_median: float = Field(
        4.0, gt=0, description="Median peak rain rate of a cell (mm/h)."
    )
    cell_intensity_log_std: float = Field(
        1.0, ge=0, description="Log-std of cell peak rain rate (heavy tail)."
    )
    cell_radius_km: tuple[float, float] = Field(
        (3.0, 8.0), description="Range of cell Gaussian radii (km)."
    )
    cell_lifetime_h: float = Field(1.5, gt=0, description="Mean cell lifetime (h), exponential.")
    cell_lifetime_max_h: float = Field(
        6.0, gt=0, description="Longest cell lifetime (h): also the oracle's spin-up."
    )
    lr_drizzle: float = Field(
        0.05, ge=0, description="Drizzle rate of the LR parameterisation in moist air (mm/h)."
    )
    lr_convective_factor: float = Field(
        0.7, ge=0, description="Fraction of expected convective rain the LR gives."
    )


PRESETS: dict[str, WorldParams] = {
    # demo and tests: about 5.5 km HR on the whole DEM (80 x 200), LR 0.4 deg (10 x 25)
    "alps-small": WorldParams(hr_resolution_deg=0.05, ratio=8, days=60.0),
    # about 2.5 km HR (160 x 400), LR 0.2 deg (20 x 50): ERA5-like
    "alps": WorldParams(hr_resolution_deg=0.025, ratio=8, days=365.0),
}


def preset(name: str) -> WorldParams:
    """The named preset; an unknown name is an error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown world preset '{name}'; known presets: {', '.join(PRESETS)}"
        ) from None
