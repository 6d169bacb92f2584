"""Regenerate the reference pages from the settings models: python docs/make_reference.py"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from finescale.atmorep.settings import AtmoRepConfig
from finescale.config import DistillConfig, ExperimentConfig
from finescale.config.load import first_model
from finescale.data.world import WorldParams

DOCS = Path(__file__).parent
PAGES = {
    "configuration.md": (ExperimentConfig, "Configuration reference"),
    "distill-configuration.md": (DistillConfig, "Distillation configuration reference"),
    "atmorep-configuration.md": (AtmoRepConfig, "AtmoRep configuration reference"),
    "world-parameters.md": (WorldParams, "Alps world parameters"),
}


def reference_markdown(
    model: type[BaseModel] = ExperimentConfig, title: str = "Configuration reference"
) -> str:
    """A Markdown reference of every settings section reachable from ``model`` (docs are generated
    from it)."""
    sections: list[tuple[str, type[BaseModel]]] = []
    seen: dict[type[BaseModel], str] = {}

    def walk(prefix: str, cls: type[BaseModel]) -> None:
        sections.append((prefix, cls))
        if cls in seen:
            return
        seen[cls] = prefix
        for name, field in cls.model_fields.items():
            inner = first_model(field.annotation)
            if inner is not None:
                key = f"{prefix}.{name}" if prefix else name
                is_mapping = getattr(field.annotation, "__origin__", None) is dict
                walk(f"{key}.<name>" if is_mapping else key, inner)

    walk("", model)
    lines = [
        f"# {title}",
        "",
        "Generated from the settings models by `docs/make_reference.py`.",
        "",
    ]
    for prefix, cls in sections:
        lines += [
            f"## `{prefix or '(top level)'}`: {cls.__name__}",
            "",
            inspect.cleandoc(cls.__doc__ or ""),
            "",
        ]
        if seen[cls] != prefix:
            lines += [f"Same keys as `{seen[cls]}`.", ""]
            continue
        lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, field in cls.model_fields.items():
            if field.is_required():
                default = "required"
            elif first_model(field.annotation) is not None and field.get_default(
                call_default_factory=True
            ):
                default = "see its section"
            else:
                default = repr(field.get_default(call_default_factory=True))
            kind = _type_name(field.annotation)
            lines.append(f"| `{name}` | {kind} | `{default}` | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or re.sub(
        r"finescale\.(\w+\.)+", "", str(annotation).replace("typing.", "").replace("pathlib.", "")
    )
    return text.replace("|", "or")


def pages() -> dict[Path, str]:
    return {
        DOCS / name: reference_markdown(model, title) + "\n"
        for name, (model, title) in PAGES.items()
    }


if __name__ == "__main__":
    for path, text in pages().items():
        path.write_text(text)
        print(f"wrote {path}")
