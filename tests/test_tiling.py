"""Tiled generation: tiles cover the grid, blending is a weighted mean, and a field drawn tile by
tile has no seams (no jump at tile borders, the spectrum of the field drawn whole). Large domains
get blocks of fewer times, and a run whose estimated memory is above a limit is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finescale.config import ModelConfig, SampleConfig
from finescale.data.channels import Layout
from finescale.generation import (
    Window,
    blend_weights,
    check_memory,
    chunk_times,
    draw,
    estimate_memory,
    tiled,
    tiles,
)
from finescale.generation.memory import BLOCK_BUDGET_BYTES, MAX_CHUNK_TIMES
from finescale.models.build import build_model
from finescale.models.diffusion import DiffusionModel
from finescale.nn.settings import UNetArchitecture

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 96  # grid side, in points
TILE = 32
# blended borders measured 0.9-1.35 over six random networks, hard edges 3.6-12
SEAM_TOLERANCE = 1.5
SPECTRUM_TOLERANCE = 0.1
LAYOUT = Layout(("t2m",), ("orog",), ("t2m",), position=False, time=False)


def test_tiles_cover_the_grid_and_blend_to_a_weighted_mean():
    for shape, size, overlap in [((96, 96), 32, 16), ((70, 100), 32, 8), ((40, 40), 64, 16)]:
        windows = tiles(shape, size, overlap)
        covered = np.zeros(shape, int)
        for y0, x0, p, q in windows:
            assert 0 <= y0 and y0 + p <= shape[0] and 0 <= x0 and x0 + q <= shape[1]
            covered[y0 : y0 + p, x0 : x0 + q] += 1
        assert covered.min() >= 1
        field = torch.randn(2, 3, *shape)

        def crop(w: Window, field: torch.Tensor = field) -> torch.Tensor:
            return field[..., w[0] : w[0] + w[2], w[1] : w[1] + w[3]]

        # a weighted mean of equal values
        torch.testing.assert_close(tiled(crop, windows, shape, overlap), field)
        inner = [w for w in windows if w[0] > 0 and w[1] > 0]
        if inner:  # weights fall to near 0 at a tile's inner edges, where its estimate is worst
            weights = blend_weights(inner[0], shape, overlap)
            assert weights[0].max() < 0.02 and weights[:, 0].max() < 0.02 and weights.max() > 0.99


def _network(seed: int = 0) -> DiffusionModel:
    """A small diffusion network with random weights everywhere (its output layer starts at zero,
    which would make the denoiser a pointwise function, blind to tiles)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        kind="diffusion",
        residual="interpolation",
        network=UNetArchitecture(base_width=8, channel_mult=(1, 2)),
    )
    model = build_model(config, LAYOUT, periodic_lon=False).eval()
    for weight in model.parameters():
        if weight.dim() > 1 and not weight.any():
            torch.nn.init.normal_(weight, std=0.1)
    return model


def _inputs(members: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random conditioning (members, 2, SIZE, SIZE), the same for every member, and its
    base."""
    rng = np.random.default_rng(seed)
    k2 = np.fft.fftfreq(SIZE)[:, None] ** 2 + np.fft.fftfreq(SIZE)[None] ** 2
    fields = np.fft.ifft2(
        np.fft.fft2(rng.standard_normal((2, SIZE, SIZE))) * np.exp(-400 * k2)
    ).real
    cond = torch.from_numpy((fields / fields.std()).astype(np.float32)).expand(members, -1, -1, -1)
    return cond, cond[:, :1]


def _draw(model: DiffusionModel, overlap: int, windows: list[Window] | None) -> np.ndarray:
    """(members, SIZE, SIZE) drawn from the same noise, tile by tile or whole (``windows`` None)."""
    cond, base = _inputs()
    sample = SampleConfig(solver="dpmpp_2m", schedule="log_uniform", steps=6, tile_overlap=overlap)
    return draw(model, cond, base, sample, torch.Generator().manual_seed(0), windows)[:, 0].numpy()


def seam_ratio(field: np.ndarray, reference: np.ndarray, windows: list[Window]) -> float:
    """Mean squared jump between neighbouring points of ``field - reference`` across tile borders,
    over the same inside tiles: about 1 without seams, well above with them.

    ``reference`` is the field drawn whole from the same noise: the difference holds what
    tiling changed, free of the field's own variability.
    """
    change = field - reference
    # between columns x and x + 1, and rows (the tiles are square)
    jumps = ((change[..., 1:] - change[..., :-1]) ** 2).mean(axis=(0, 1))
    jumps = jumps + ((change[..., 1:, :] - change[..., :-1, :]) ** 2).mean(axis=(0, 2))
    borders = sorted(
        {edge - 1 for y0, x0, p, q in windows for edge in (x0, x0 + q) if 0 < edge < SIZE}
    )
    inside = np.ones(jumps.size, bool)
    inside[borders] = False
    return float(jumps[borders].mean() / jumps[inside].mean())


def band_ratios(field: np.ndarray, reference: np.ndarray, bands: int = 8) -> np.ndarray:
    """Power of ``field`` over that of ``reference`` in ``bands`` bands of wavenumber (1-D spectra
    along x and y, averaged over rows, columns and members; the mean left out)."""

    def power(f: np.ndarray) -> np.ndarray:
        along_x = (np.abs(np.fft.rfft(f, axis=-1)) ** 2).mean(axis=(0, 1))
        return along_x + (np.abs(np.fft.rfft(f, axis=-2)) ** 2).mean(axis=(0, 2))

    ratio = power(field) / power(reference)
    return np.array(
        [ratio[band].mean() for band in np.array_split(np.arange(1, ratio.size), bands)]
    )


@pytest.fixture(scope="module")
def network() -> DiffusionModel:
    return _network()


@pytest.fixture(scope="module")
def whole(network) -> np.ndarray:
    return _draw(network, 16, None)


def test_blended_tiles_leave_no_seams(network, whole):
    windows = tiles((SIZE, SIZE), TILE, 16)
    field = _draw(network, 16, windows)
    # tiles do change the field (the network sees their edges)
    assert np.abs(field - whole).max() > 1e-3
    assert seam_ratio(field, whole, windows) < SEAM_TOLERANCE
    assert np.all(np.abs(band_ratios(field, whole) - 1) < SPECTRUM_TOLERANCE)


def test_hard_tile_edges_fail_the_seam_check(network, whole):
    windows = tiles((SIZE, SIZE), TILE, 0)  # no overlap: each point from one tile, no blending
    assert seam_ratio(_draw(network, 0, windows), whole, windows) > 2 * SEAM_TOLERANCE


def test_blocks_hold_fewer_times_on_large_domains():
    assert chunk_times(8, 4, (96, 96)) == MAX_CHUNK_TIMES == 24
    assert chunk_times(2, 4, (2048, 2048)) == 2  # 134 MB a time
    assert chunk_times(8, 4, (2048, 2048)) == 1  # one time alone is above the budget
    for batch, variables, side in [(8, 4, 512), (2, 3, 1024), (4, 4, 1500), (2, 3, 2048)]:
        times = chunk_times(batch, variables, (side, side))
        assert 1 <= times < MAX_CHUNK_TIMES
        assert 4 * batch * variables * side**2 * times <= BLOCK_BUDGET_BYTES


def test_memory_estimate_follows_the_batch_and_a_run_above_the_limit_is_refused(network):
    settings = SampleConfig(members=8, batch_size=8, tile_size=256, solver="dpmpp_2m")
    shape, times = (2048, 2048), 24
    estimates = {
        b: estimate_memory(network, LAYOUT, settings, shape, times, b) for b in (1, 2, 3, 4, 8)
    }
    assert estimates[8] == estimate_memory(
        network, LAYOUT, settings, shape, times
    )  # the settings' batch
    # 7 float64 solver arrays and 2 float32 ones (noise, mu) of a member's 2048 x 2048 values
    assert estimates[1].sampler == (7 * 8 + 2 * 4) * 2048**2
    assert (
        estimates[2].sampler == 2 * estimates[1].sampler
        and estimates[2].fields == estimates[1].fields
    )
    assert all(estimates[a].total < estimates[b].total for a, b in [(1, 2), (2, 4), (4, 8)])
    limit = (estimates[2].total + estimates[3].total) / 2e9  # the largest batch that fits is 2
    assert check_memory(network, LAYOUT, settings, shape, times, None) == estimates[8]
    with pytest.raises(ValueError, match=r"above --max-memory-gb .*: use sample.batch_size=2$"):
        check_memory(network, LAYOUT, settings, shape, times, limit)
    with pytest.raises(ValueError, match="no batch size fits"):
        check_memory(network, LAYOUT, settings, shape, times, 0.5)
