"""The evaluation report: one self-contained HTML page, and a short rich table for the terminal.

The page has no external requests (figures are embedded as base64 PNG data URIs, CSS is
inline), so it can be mailed, archived or opened offline and always shows the same thing.
Every text taken from the data (names, paths, notes) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

from rich.table import Table

from finescale.verify import metrics as read
from finescale.verify.metrics import FIGURES, METRIC_KEYS, REGION_KEYS
from finescale.verify.report_text import CAPTIONS, CSS

__all__ = ["best_roles", "format_value", "render_report", "summary_table"]

WEIGHTING_WORDS = {
    "area": "means weighted by grid-cell area (cos latitude)",
    "none": "plain means over the grid points (unweighted)",
}
BETTER_TEXT = {"lower": "lower", "one": "closest to 1", "zero": "closest to 0", "none": ""}


def format_value(value: float | None) -> str:
    """4 significant digits; an em dash for an undefined value."""
    if value is None:
        return "\u2014"
    return f"{value:.4g}"


def _distance(value: float, better: str) -> float:
    return {"lower": value, "one": abs(value - 1.0), "zero": abs(value)}[better]


def best_roles(values: Mapping[str, float | None], better: str) -> set[str]:
    """Sources with the best value ("lower", "one" = closest to 1, "zero" = closest to 0).

    Empty when fewer than two values are defined or the metric has no better direction. Ties
    are all best, within a relative 1e-6 of the values: float32 round-off (e.g. the RMSE of an
    ensemble mean and of the same mean stored as a deterministic forecast) is not a difference.
    """
    defined = {r: v for r, v in values.items() if v is not None}
    if better not in ("lower", "one", "zero") or len(defined) < 2:
        return set()
    distance = {r: _distance(v, better) for r, v in defined.items()}
    top = min(distance.values())
    tolerance = 1e-6 * max(abs(v) for v in defined.values())
    return {r for r, d in distance.items() if d <= top + tolerance}


# --------------------------------------------------------------------------------------------
# terminal
# --------------------------------------------------------------------------------------------


def summary_table(metrics: Mapping[str, Any]) -> Table:
    """Fair CRPS (best per variable in bold green) and SSR of every source, for the terminal.

    One row per variable and source, four columns, so it stays readable at 80 columns however
    many references there are; names are never cut.
    """
    roles = read.roles(metrics)
    meta = metrics["meta"]
    weighting = WEIGHTING_WORDS.get(meta.get("weighting", ""), "")
    table = Table(
        title=f"{read.label(metrics, 'forecast')}: {meta['times']['scored']} times scored",
        caption="fair CRPS: lower is better, best in green; SSR: 1 is calibrated"
        + (f"; {weighting}" if weighting else ""),
    )
    table.add_column("variable", style="bold", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("fair CRPS", justify="right", no_wrap=True)
    table.add_column("SSR", justify="right", no_wrap=True)
    for name in read.variables(metrics):
        crps = {r: read.scores(metrics, r).get(name, {}).get("crps_fair") for r in roles}
        best = best_roles(crps, "lower")
        for i, role in enumerate(roles):
            text = format_value(crps[role])
            table.add_row(
                name if i == 0 else "",
                read.label(metrics, role),
                f"[bold green]{text}[/]" if role in best else text,
                format_value(read.scores(metrics, role).get(name, {}).get("ssr")),
                end_section=i == len(roles) - 1,
            )
    return table


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _header_cells(metrics: Mapping[str, Any]) -> str:
    return "".join(f"<th>{_e(read.label(metrics, r))}</th>" for r in read.roles(metrics))


def _value_cells(
    metrics: Mapping[str, Any], values: Mapping[str, float | None], better: str
) -> str:
    best = best_roles(values, better)
    cells = []
    for role in read.roles(metrics):
        value = values.get(role)
        css = "best" if role in best else ("na" if value is None else "")
        cells.append(
            f'<td class="{css}">{_e(format_value(value))}</td>'
            if css
            else f"<td>{_e(format_value(value))}</td>"
        )
    return "".join(cells)


def _summary_html(metrics: Mapping[str, Any]) -> str:
    """Two small tables: fair CRPS and SSR, variables x sources."""
    parts = []
    for key, title, better in (
        ("crps_fair", "Fair CRPS (lower is better)", "lower"),
        ("ssr", "Spread-skill ratio (1 is calibrated)", "one"),
    ):
        rows = []
        for name in read.variables(metrics):
            values = {
                r: read.scores(metrics, r).get(name, {}).get(key) for r in read.roles(metrics)
            }
            units = metrics["meta"].get("units", {}).get(name, "") if key == "crps_fair" else "1"
            rows.append(
                f'<tr><td class="name">{_e(name)}</td><td class="name">{_e(units)}</td>'
                f"{_value_cells(metrics, values, better)}</tr>"
            )
        parts.append(
            f'<h3>{_e(title)}</h3><table><thead><tr><th class="name">variable</th>'
            '<th class="name">units</th>'
            f"{_header_cells(metrics)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(parts)


def _variable_table(metrics: Mapping[str, Any], name: str) -> str:
    """Every metric of one variable: rows are metrics, columns the sources; best highlighted."""
    units = metrics["meta"].get("units", {}).get(name, "")
    thresholds = metrics["meta"].get("thresholds", {}).get(name, {})
    rows = []
    for key, description, better in METRIC_KEYS:
        values = {r: read.scores(metrics, r).get(name, {}).get(key) for r in read.roles(metrics)}
        rows.append(
            f'<tr><td class="name"><code>{_e(key)}</code></td>'
            f'<td class="name">{_e(description)}</td>'
            f'<td class="name">{_e(BETTER_TEXT[better])}</td>'
            f"{_value_cells(metrics, values, better)}</tr>"
        )
    thr = ", ".join(f"{k} = {format_value(v)} {units}" for k, v in thresholds.items())
    return (
        f'<h3 id="var-{_e(name)}">{_e(name)} '
        f'<span class="muted">({_e(units or "no units")})</span></h3>'
        f'<p class="muted">Thresholds from the truth climatology: {_e(thr or "none")}.</p>'
        '<table><thead><tr><th class="name">metric</th><th class="name">what</th>'
        '<th class="name">better</th>'
        f"{_header_cells(metrics)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _region_text(info: Mapping[str, Any]) -> str:
    """'box 45.5 to 47 N, 7 to 10 E, 1800 points (11% of the grid)' or the mask's source."""
    if info.get("kind") == "box":
        (lat0, lat1), (lon0, lon1) = info["lat"], info["lon"]
        where = f"box lat {lat0:g} to {lat1:g}, lon {lon0:g} to {lon1:g}"
    else:
        where = f"mask {info.get('source') or '(given in Python)'}"
    return (
        f"{where}; {info.get('points', '?')} grid points "
        f"({100 * info.get('fraction', 0):.3g}% of the grid)"
    )


def _region_table(metrics: Mapping[str, Any], region: str) -> str:
    """Every region metric of every variable: rows (variable, metric), columns the sources."""
    info = metrics["meta"].get("regions", {}).get(region, {})
    rows = []
    for name in read.variables(metrics):
        units = metrics["meta"].get("units", {}).get(name, "")
        for i, (key, description, better) in enumerate(REGION_KEYS):
            values = {
                r: read.region_scores(metrics, region, r).get(name, {}).get(key)
                for r in read.roles(metrics)
            }
            head = (
                f'<td class="name" rowspan="{len(REGION_KEYS)}"><b>{_e(name)}</b><br>'
                f'<span class="muted">{_e(units or "no units")}</span></td>'
                if i == 0
                else ""
            )
            rows.append(
                f'<tr>{head}<td class="name"><code>{_e(key)}</code></td>'
                f'<td class="name">{_e(description)}</td>'
                f'<td class="name">{_e(BETTER_TEXT[better])}</td>'
                f"{_value_cells(metrics, values, better)}</tr>"
            )
    return (
        f'<h3 id="region-{_e(region)}">{_e(region)}</h3><p class="muted">{_e(_region_text(info))}. '
        "Every score on these points alone, thresholds and quantiles from the truth within the "
        "region; spectra only for the whole domain.</p>"
        '<table><thead><tr><th class="name">variable</th><th class="name">metric</th>'
        f'<th class="name">what</th><th class="name">better</th>{_header_cells(metrics)}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _image(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _caption(metrics: Mapping[str, Any], key: str) -> str:
    """A figure's caption; the spectra's names the method used (``meta.spectra.method``)."""
    if key != "spectra":
        return CAPTIONS.get(key, "")
    spectra = metrics.get("meta", {}).get("spectra") or {}
    method = spectra.get("method", "radially averaged PSD (Hann window)")
    averaged = spectra.get("averaged", "averaged over members and times")
    return f"Method: {_e(method)}; {_e(averaged)}. " + CAPTIONS["spectra"]


def _figures_html(metrics: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    parts = []
    titles = dict(FIGURES)
    for key, source in figures.items():
        data = bytes(source)
        title = titles.get(key, key)
        parts.append(
            f'<section id="fig-{_e(key)}"><h2>{_e(title)}</h2><figure>'
            f'<img alt="{_e(title)}" src="{_image(data)}">'
            f"<figcaption>{_caption(metrics, key)}</figcaption></figure></section>"
        )
    return "".join(parts)


def _protocol_html(metrics: Mapping[str, Any]) -> str:
    meta = metrics["meta"]
    sources = meta.get("sources", {})
    times = meta["times"]
    grid = meta["grid"]
    items = [
        (
            "forecast",
            f"{read.label(metrics, 'forecast')}: {sources.get('forecast') or 'in memory'}",
        ),
        ("truth", sources.get("truth") or "in memory"),
        ("LR input", sources.get("lr") or "not given"),
    ]
    for name, path in (sources.get("references") or {}).items():
        items.append((f"reference {name}", path))
    members = ", ".join(
        f"{read.label(metrics, r)}: {n}" for r, n in meta.get("members", {}).items()
    )
    dropped = ", ".join(f"{r}: {n}" for r, n in times.get("dropped", {}).items())
    bands = ", ".join(f"{lo:.3g}\u2013{hi:.3g}" for lo, hi in meta.get("spectral_bands_km", []))
    grid_text = (
        f"{grid['ny']} x {grid['nx']} points; HR grid length {grid['hr_grid_length_km']:.3g} km "
        f"(dy {grid['hr_spacing_km'][0]:.3g}, dx {grid['hr_spacing_km'][1]:.3g} km); "
        f"LR grid length {grid['lr_grid_length_km']:.3g} km ({grid['lr_grid_length_from']})"
    )
    items += [
        ("members", members),
        ("times scored", f"{times['scored']} ({times['first']} to {times['last']})"),
        ("times left out", f"{dropped} (only times in every source are scored)"),
        ("variables", ", ".join(meta.get("variables", []))),
        (
            "derived",
            ", ".join(f"{k} = {v}" for k, v in (meta.get("derived") or {}).items()) or "none",
        ),
        ("grid", grid_text),
        ("spectral bands (km)", bands),
        ("averaging", meta.get("averaging") or WEIGHTING_WORDS.get(meta.get("weighting", ""), "")),
        ("quantiles", meta.get("quantile_method", "")),
        ("spectra", (meta.get("spectra") or {}).get("method", "")),
        ("maps at", meta.get("map_time", "")),
        (
            "finescale",
            f"{meta.get('finescale_version', '?')}, written {meta.get('created_utc', '?')}",
        ),
    ]
    for name, info in (meta.get("regions") or {}).items():
        items.append((f"region {name}", _region_text(info)))
    for name, reason in (meta.get("skipped_variables") or {}).items():
        items.append((f"skipped {name}", reason))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    notes = "".join(f"<li>{_e(n)}</li>" for n in meta.get("notes", []))
    return f"<dl>{body}</dl>" + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")


def render_report(metrics: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    """The report page as one HTML string: summary, metric tables, region tables, figures, protocol.

    ``figures``: figure id (see ``FIGURES``) -> PNG bytes, embedded in that order. Pure: the
    evaluation runner reads and writes the files.
    """
    name = read.label(metrics, "forecast")
    meta = metrics["meta"]
    refs = list(metrics.get("references", {}))
    lead = (
        f"{meta['times']['scored']} times from {meta['times']['first']} "
        f"to {meta['times']['last']}, "
        f"{meta.get('members', {}).get('forecast', '?')} members, against "
        + (", ".join(refs) if refs else "no reference")
        + "."
    )
    nav = ['<a href="#summary">Summary</a>', '<a href="#metrics">Metrics</a>']
    regions = read.regions(metrics)
    if regions:
        nav.append('<a href="#regions">Regions</a>')
    nav += [f'<a href="#fig-{_e(k)}">{_e(dict(FIGURES).get(k, k))}</a>' for k in figures]
    nav.append('<a href="#protocol">Protocol</a>')
    tables = "".join(_variable_table(metrics, v) for v in read.variables(metrics))
    region_section = (
        '<section id="regions"><h2>Regions</h2><p class="muted">Each region scored alone; '
        "best per row highlighted.</p>"
        f"{''.join(_region_table(metrics, r) for r in regions)}</section>"
        if regions
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>finescale evaluation: {_e(name)}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f"<h1>Evaluation of {_e(name)}</h1><p>{_e(lead)}</p><nav>{' '.join(nav)}</nav>"
        '<section id="summary"><h2>Summary</h2>'
        '<p class="muted">Best value per row highlighted.</p>'
        f"{_summary_html(metrics)}</section>"
        '<section id="metrics"><h2>Metrics per variable</h2>'
        '<p class="muted">Averages over every grid point and scored time '
        f"({_e(WEIGHTING_WORDS.get(meta.get('weighting', ''), 'see the protocol'))}); "
        "extremes use thresholds fixed from the truth climatology; best per row highlighted "
        f"(no highlight for the spread, which has no better direction alone).</p>{tables}</section>"
        f"{region_section}"
        f"{_figures_html(metrics, figures)}"
        '<section id="protocol"><h2>Protocol and provenance</h2>'
        f"{_protocol_html(metrics)}</section>"
        "</main></body></html>\n"
    )
