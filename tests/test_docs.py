"""The reference pages in docs/ are generated from the settings models and must match them."""

import runpy
from pathlib import Path

DOCS = Path(__file__).parents[1] / "docs"


def test_reference_pages_are_up_to_date():
    pages = runpy.run_path(str(DOCS / "make_reference.py"), run_name="reference")["pages"]()
    for path, text in pages.items():
        assert path.read_text() == text, (
            f"{path.name} is stale: run `python docs/make_reference.py`"
        )
