"""Regenerate the reference pages from the settings models: python docs/make_reference.py"""

from __future__ import annotations

from pathlib import Path

from finescale.config import AtmoRepConfig, ExperimentConfig, reference_markdown
from finescale.data.world import WorldParams

DOCS = Path(__file__).parent
PAGES = {
    "configuration.md": (ExperimentConfig, "Configuration reference"),
    "atmorep-configuration.md": (AtmoRepConfig, "AtmoRep configuration reference"),
    "world-parameters.md": (WorldParams, "Alps world parameters"),
}


def pages() -> dict[Path, str]:
    return {DOCS / name: reference_markdown(model, title) + "\n" for name, (model, title) in PAGES.items()}


if __name__ == "__main__":
    for path, text in pages().items():
        path.write_text(text)
        print(f"wrote {path}")
