"""The base of every settings model: frozen, extra keys forbidden, and the error a bad config
raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and what is allowed."""


class Settings(BaseModel):
    """Base of every settings object: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
