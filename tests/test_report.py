"""The evaluation report: tables with the best highlighted, escaping, the terminal summary, and
a real render in headless Chromium (skipped, with the reason, where no Chromium is installed).

The data are synthetic and small (fast): truth and members share a smooth large-scale field
and draw their own small scales, so the ensemble is calibrated by construction; a blurred copy
of the truth is the deterministic reference. No LR input: the maps go without that column.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import xarray as xr
from rich.console import Console
from scipy.ndimage import gaussian_filter

from finescale.evaluation import run_evaluate
from finescale.io.atomic import write_zarr
from finescale.verify.metrics import FIGURES
from finescale.verify.report import best_roles, format_value, render_report, summary_table

MEMBERS = 6
VARIABLES = ["t2m", "u10", "v10", "wind_speed"]


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Unit-variance random field, Gaussian-smoothed over the last two axes."""
    field = gaussian_filter(
        rng.standard_normal(shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma), mode="wrap"
    )
    return field / field.std()


def _dataset(
    values: dict[str, np.ndarray], times: np.ndarray, lat: np.ndarray, lon: np.ndarray, member: bool
) -> xr.Dataset:
    dims = ("member", "time", "y", "x") if member else ("time", "y", "x")
    units = {"t2m": "K", "u10": "m s-1", "v10": "m s-1"}
    data = {k: (dims, v.astype(np.float32), {"units": units[k]}) for k, v in values.items()}
    coords = {"time": times, "lat": (("y", "x"), lat), "lon": (("y", "x"), lon)}
    if member:
        coords["member"] = np.arange(values["t2m"].shape[0])
    return xr.Dataset(data, coords=coords)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    rng = np.random.default_rng(4)
    root = tmp_path_factory.mktemp("report")
    ny, nx, nt = 32, 48, 6
    lat, lon = np.meshgrid(45.0 + 0.05 * np.arange(ny), 7.0 + 0.05 * np.arange(nx), indexing="ij")
    times = np.arange(
        np.datetime64("2022-05-01T00"), np.datetime64("2022-05-01T06"), np.timedelta64(1, "h")
    )
    assert times.size == nt
    offsets = {"t2m": 285.0, "u10": 4.0, "v10": -1.0}
    truth, members = {}, {}
    for name, offset in offsets.items():
        large = 3.0 * _smooth(rng, (nt, ny, nx), 6.0)
        truth[name] = offset + large + _smooth(rng, (nt, ny, nx), 1.0)
        members[name] = offset + large[None] + _smooth(rng, (MEMBERS, nt, ny, nx), 1.0)
    blurred = {k: gaussian_filter(v, sigma=(0, 3, 3), mode="nearest") for k, v in truth.items()}
    write_zarr(_dataset(truth, times, lat, lon, member=False), root / "truth.zarr")
    write_zarr(_dataset(members, times, lat, lon, member=True), root / "ens.zarr")
    write_zarr(_dataset(blurred, times, lat, lon, member=False), root / "blurred.zarr")
    return run_evaluate(
        root / "ens.zarr",
        root / "truth.zarr",
        root / "out",
        references={"blurred": root / "blurred.zarr"},
    )


@pytest.fixture(scope="module")
def metrics(report_dir) -> dict:
    import json

    return json.loads((report_dir / "metrics.json").read_text())


def test_best_roles():
    assert best_roles({"a": 1.0, "b": 2.0}, "lower") == {"a"}
    assert best_roles({"a": 0.7, "b": 1.1, "c": None}, "one") == {"b"}
    assert best_roles({"a": -0.05, "b": 0.2}, "zero") == {"a"}
    assert best_roles({"a": 0.5, "b": 0.5 * (1 + 1e-9)}, "lower") == {
        "a",
        "b",
    }  # round-off is a tie
    assert best_roles({"a": 1.0, "b": None}, "lower") == set()  # nothing to compare with
    assert best_roles({"a": 1.0, "b": 2.0}, "none") == set()
    assert format_value(None) == "\u2014" and format_value(0.123456) == "0.1235"


def test_report_content(report_dir, metrics):
    page = (report_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<img ") == len(FIGURES) and page.count("data:image/png;base64,") == len(
        FIGURES
    )
    for name in (*VARIABLES, "blurred", "ens", "spectral_log_ratio_max", "Protocol and provenance"):
        assert name in page, name
    # the calibrated ensemble wins the fair CRPS of every variable: highlighted in its column
    for name in VARIABLES:
        assert (
            metrics["forecast"][name]["crps_fair"]
            < metrics["references"]["blurred"][name]["crps_fair"]
        )
    assert page.count('class="best"') >= len(VARIABLES)
    assert not list(report_dir.glob(".*tmp*")), "a temporary file was left behind"


def test_names_are_escaped(metrics):
    bad = dict(metrics, meta=dict(metrics["meta"], forecast_name="<script>alert(1)</script>"))
    page = render_report(bad, {"scores": b"\x89PNG fake"})
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_summary_table(metrics):
    table = summary_table(metrics)
    # one row per variable and source, four columns: readable at 80 columns, names whole
    assert table.row_count == 2 * len(VARIABLES) and len(table.columns) == 4
    console = Console(record=True, width=80)
    console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "blurred" in text and "wind_speed" in text and "\u2014" in text  # no SSR for one member
    assert "weighted by grid-cell area" in " ".join(text.split())


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish in 120 s: {' '.join(command)}")


def test_headless_chromium_renders_report(report_dir, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip(
            "no Chromium (/usr/bin/chromium, chromium or chromium-browser on PATH): "
            "report not rendered"
        )
    url = (report_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    result = _run_chromium(
        binary, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,3000", url
    )
    assert shot.is_file() and shot.stat().st_size > 0, result.stderr[-2000:]
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (3000, 1400)
    assert float(image[..., :3].std()) > 0.05, "the screenshot is blank"
    # the page paints more than a white sheet: dark text and coloured figures
    assert (image[..., :3].mean(axis=-1) < 0.3).mean() > 0.001

    dom = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url).stdout
    assert dom.count("<table") == 2 + len(VARIABLES)  # summary CRPS and SSR, one per variable
    assert dom.count('src="data:image/png;base64,') == len(FIGURES)
    for name in (*VARIABLES, "blurred"):
        assert name in dom, name


def test_region_tables(metrics):
    """A table per region, its description in the protocol; names from the data are escaped."""
    regions = {
        name: {"forecast": metrics["forecast"], "references": metrics["references"]}
        for name in ("north", "<b>bad</b>")
    }
    meta = dict(
        metrics["meta"],
        regions={
            "north": {
                "kind": "box",
                "lat": [45.5, 47.0],
                "lon": [7.0, 9.0],
                "points": 120,
                "fraction": 0.078,
            },
            "<b>bad</b>": {
                "kind": "mask",
                "source": "masks.zarr:inside",
                "points": 10,
                "fraction": 0.0065,
            },
        },
    )
    page = render_report(dict(metrics, regions=regions, meta=meta), {})
    assert page.count("<table") == 2 + len(VARIABLES) + 2
    assert 'id="region-north"' in page and "box lat 45.5 to 47, lon 7 to 9; 120 grid points" in page
    assert (
        "mask masks.zarr:inside" in page
        and "<b>bad</b>" not in page
        and "&lt;b&gt;bad&lt;/b&gt;" in page
    )
    assert page.count("spectral_log_ratio_max") == len(VARIABLES)  # in the whole-domain tables only
    assert render_report(metrics, {}).count("<table") == 2 + len(
        VARIABLES
    )  # no regions: no section
