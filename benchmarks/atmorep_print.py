"""The printed summary of the AtmoRep held-out benchmark (benchmarks/atmorep.py): the choices made
on validation, the pooled figures with their 95 % intervals, and the goals."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fmt(x: dict[str, Any] | None, digits: int = 2) -> str:
    """A figure as ``value [lo, hi]``; ``-`` where not measured."""
    if x is None:
        return "-"
    if x["ci95"] is None:  # too many resamples undefined (intervals.UNDEFINED_SHARE)
        return f"{x['value']:.{digits}f} [no interval]"
    lo, hi = x["ci95"]
    return f"{x['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def ensemble_rows(per_variable: dict[str, Any], reference: str, prefix: str = "") -> list[list]:
    """Rows of ours and scratch's fair CRPS / ``reference`` and SSR, and ours / scratch."""
    key = f"crps_{reference}_ratio"
    rows = []
    for v, fig in per_variable.items():
        ours, scratch = fig["ours"], fig.get("scratch", {})
        rows.append(
            [
                f"{prefix}{v}",
                fmt(ours.get(key)),
                fmt(ours["ssr"]),
                fmt(scratch.get(key)),
                fmt(scratch.get("ssr")),
                fmt(fig.get("ours_scratch_crps_ratio"), 3),
            ]
        )
    return rows


def summary(config: Path, result: dict[str, Any], path: Path) -> str:
    """The selection, the pooled figures and the goals as text (Markdown tables)."""
    lines = [
        f"\n{config}: results in {path}",
        "",
        "chosen on the development world's validation block:",
    ]
    for task, s in result["selection"].items():
        options = "; ".join(
            f"{c['name']}: {c['goals_met']} of {c['goals_measured']} goals, "
            f"{s['score']} {c['score']:.3f}"
            for c in s["candidates"]
        )
        lines.append(f"  {task}: {s['chosen']} ({options})")
    for task, s in result["scratch"].items():
        lines.append(f"  {task} from scratch: {s['steps']} steps, network of '{s['network_of']}'")
    pooled = result["pooled"]
    worlds = ", ".join(f"seed {w['seed']} ({w['terrain']})" for w in result["heldout_worlds"])
    lines += [
        "",
        f"held-out worlds {worlds}; blocks of {pooled['block_days']} days, 95 % intervals",
    ]
    figures = pooled["figures"]
    header = [
        "variable",
        "ours CRPS / {}",
        "ours SSR",
        "scratch CRPS / {}",
        "scratch SSR",
        "ours / scratch",
    ]
    for task, reference in (("interpolation", "linear"), ("downscale", "diffusion")):
        lines += ["", f"{task}:"]
        lines += table(
            [h.format(reference) for h in header], ensemble_rows(figures[task], reference)
        )
    lines += ["", "nowcast:"]
    rows = [
        row
        for lead, per in figures["nowcast"].items()
        for row in ensemble_rows(per, "persistence", f"{lead} ")
    ]
    lines += table([h.format("persistence") for h in header], rows)
    lines += ["", "downscaling spectral max (band km) and CRPS / oracle:"]
    for v, fig in figures["downscale"].items():
        spectral = fig["ours"]["spectral"]
        band = "-".join(f"{km:.0f}" for km in spectral["band_km"])
        oracle = fmt(fig["ours"].get("crps_oracle_ratio"))
        lines.append(f"  {v}: {fmt(spectral, 3)} ({band}); CRPS / oracle {oracle}")
    bias = figures["bias"]
    lines += ["", "bias correction of LR tp (against the HR truth coarsened to the LR grid):"]
    lines += table(
        ["source", "mean error", "q99 error", "Brier above the truth's q99"],
        [
            [
                name,
                fmt(bias[name]["mean_rel_error"], 3),
                fmt(bias[name]["q99_rel_error"], 3),
                fmt(bias[name]["brier_q99"], 5),
            ]
            for name in ("ours", "qm", "uncorrected")
        ],
    )
    lines.append(f"  Brier ours / quantile mapping: {fmt(bias['brier_ratio_qm'])}")
    lines += ["", "goals of issue 19 (pooled):"]
    for task, checks in result["goals"].items():
        missed = [k for k, ok in checks.items() if ok is False]
        unmeasured = [k for k, ok in checks.items() if ok is None]
        met = sum(ok is True for ok in checks.values())
        text = f"  {task}: {met} of {len(checks)} met"
        text += f"; missed: {', '.join(missed)}" if missed else ""
        text += f"; not measured: {', '.join(unmeasured)}" if unmeasured else ""
        lines.append(text)
    lines += ["", "pre-training pays (ours / scratch's fair CRPS below 1):"]
    for task, rows in result["pretraining_pays"].items():
        held = [k for k, r in rows.items() if r["holds"]]
        lost = [k for k, r in rows.items() if not r["holds"]]
        lines.append(
            f"  {task}: holds for {', '.join(held) or 'none'}; not for {', '.join(lost) or 'none'}"
        )
    timings = result["timings_s"]
    trained = {k[6:]: v for k, v in timings.items() if k.startswith("train ")}
    rest = sum(timings.values()) - sum(trained.values())
    lines += [
        "",
        "training (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in trained.items()),
        f"the other stages (prediction, references, sums): {rest / 60:.1f} min",
    ]
    return "\n".join(lines)
