"""Small-scale random fields with a power-law spectrum, evolving as AR(1) in time.

A 2-D isotropic field whose 1-D (radially integrated) energy spectrum is E(k) ~ k^slope has a
2-D power spectral density ~ k^(slope - 1), so white noise is filtered by k^((slope - 1) / 2).
Scales longer than ``cutoff_km`` are removed smoothly, so the fields add structure the LR grid
cannot resolve without changing the large-scale state. The field is made on a grid 25 % larger
than the domain and cropped, which hides the periodicity of the FFT.
"""

from __future__ import annotations

import numpy as np


class SmallScaleNoise:
    """``n_fields`` independent unit-variance fields on an (ny, nx) grid with spacing
    (dy_km, dx_km)."""

    def __init__(
        self,
        n_fields: int,
        shape: tuple[int, int],
        spacing_km: tuple[float, float],
        slope: float,
        cutoff_km: float,
        timescale_h: float,
    ):
        self.n_fields = n_fields
        self.shape = shape
        self.padded = tuple(int(np.ceil(1.25 * n)) for n in shape)
        ky = 2 * np.pi * np.fft.fftfreq(self.padded[0], d=spacing_km[0])
        kx = 2 * np.pi * np.fft.rfftfreq(self.padded[1], d=spacing_km[1])
        k = np.hypot(ky[:, None], kx[None, :])
        k_c = 2 * np.pi / cutoff_km
        with np.errstate(divide="ignore"):
            amplitude = np.where(k > 0, k ** ((slope - 1.0) / 2.0), 0.0)
        amplitude *= np.sqrt(1.0 - np.exp(-((k / k_c) ** 4)))  # smooth high-pass
        # the irfft2 of unit complex white noise times amplitude has variance sum(w * a^2) / N^2,
        # w = 2 for the doubled half-plane columns; normalise to unit variance
        weight = np.full(kx.size, 2.0)
        weight[0] = 1.0
        if self.padded[1] % 2 == 0:
            weight[-1] = 1.0
        total = np.sum(weight[None, :] * amplitude**2) / (self.padded[0] * self.padded[1]) ** 2
        self.amplitude = (amplitude / np.sqrt(total)).astype(np.float32)
        self.phi = float(np.exp(-1.0 / timescale_h))
        self.state: np.ndarray | None = None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Fresh independent unit-variance fields (n_fields, ny, nx)."""
        shape = (self.n_fields, self.padded[0], self.amplitude.shape[1])
        white = np.empty(shape, dtype=np.complex64)
        white.real = rng.standard_normal(shape, dtype=np.float32)
        white.imag = rng.standard_normal(shape, dtype=np.float32)
        white *= np.float32(np.sqrt(0.5))
        fields = np.fft.irfft2(white * self.amplitude, s=self.padded, axes=(-2, -1))
        return fields[:, : self.shape[0], : self.shape[1]]

    def step(self, rng: np.random.Generator) -> np.ndarray:
        """Advance one hour: x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t (stationary from the first
        call)."""
        fresh = self.draw(rng)
        if self.state is None:
            self.state = fresh
        else:
            self.state = self.phi * self.state + np.sqrt(1.0 - self.phi**2) * fresh
        return self.state
