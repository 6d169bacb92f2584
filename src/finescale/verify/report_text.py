"""The evaluation report's fixed words and style: the figures' captions and the page's CSS."""

CAPTIONS = {
    "maps": "One time (the wettest when precipitation is scored): LR input, truth, three members, "
    "the ensemble mean and the spread (standard deviation across members). Each row shares one "
    "colour scale. Members should look like the truth (sharp, with the same structures); the mean "
    "is smooth by construction.",
    "maps_references": "The truth beside one member of the forecast and of each reference, same "
    "time and colour scale. A reference without small scales looks blurred here.",
    "spectra": "Power spectral density against wavelength in km (large scales left; at the "
    "equator for zonal spectra). Bottom: ratio to the truth (1 = right energy). The shaded band, "
    "2 HR grid lengths to the LR grid length, is the range of "
    "<code>spectral_log_ratio_max</code>: the scales downscaling must add.",
    "rank_histograms": "Rank of the truth among the members, ties broken at random; frequency "
    "times number of bins, so calibrated = flat at 1. U shape: too little spread; dome: too "
    "much; slope: bias. Only ensembles (more than one member) are shown.",
    "qq": "Quantiles of the forecast climatology (all members and points pooled) against the "
    "truth's, from 1% to 99.99%. On the diagonal: the right distribution; below it at the top: "
    "extremes too weak.",
    "scores": "Headline scores per variable for the forecast and every reference. The dashed "
    "line marks the ideal value where it is not 0 (SSR = 1).",
    "which_is_real": "A blind test at another time: the truth and two members in a seeded random "
    "order. Cover the key below the panels and guess; if the truth cannot be picked out, the "
    "members are realistic.",
}

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0;
       color: #1d2430; background: #fff; line-height: 1.45; }
main { max-width: 1300px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #d8dee9; padding-bottom: 0.2em; margin-top: 2.2em; }
h3 { margin-bottom: 0.4em; }
nav { background: #f4f6fa; padding: 0.6em 1em; border-radius: 6px; }
nav a { margin-right: 1.2em; color: #2a5db0; text-decoration: none; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #d8dee9; padding: 0.3em 0.7em; text-align: right; }
th { background: #eef1f6; }
td.name, th.name { text-align: left; }
td.best { background: #d7f0d8; font-weight: bold; }
td.na { color: #8a94a6; }
.muted { color: #5c6678; font-size: 0.9em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #e3e7ee; }
figcaption { color: #3b4455; font-size: 0.92em; max-width: 80em; margin-top: 0.4em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1.2em; }
dt { font-weight: bold; }
dd { margin: 0; }
code { background: #f1f3f7; padding: 0 0.25em; border-radius: 3px; }
"""
