"""Settings of the UNet backbone, torch-free so the config can embed them.

:class:`UNetArchitecture` is the size of the network, the ``model.network`` section of a config;
:class:`UNetSettings` adds what the data wire into it (channels, noise input, a periodic grid) and
is what :class:`finescale.nn.unet.UNet` is built from. Both are frozen and forbid unknown keys.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class UNetArchitecture(BaseModel):
    """Size of the UNet backbone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_width: int = Field(default=32, ge=4, description="Channels at the finest level.")
    channel_mult: tuple[int, ...] = Field(
        default=(1, 2, 2),
        min_length=1,
        description="Width of each level as a multiple of base_width.",
    )
    blocks_per_level: int = Field(default=1, ge=1, description="Residual blocks per encoder level.")
    attention_levels: tuple[int, ...] = Field(
        default=(), description="Levels (0 = finest) whose blocks end with self-attention."
    )
    attention_heads: int = Field(default=4, ge=1, description="Heads of each self-attention layer.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout in the residual blocks.")

    @model_validator(mode="after")
    def _levels_and_heads_fit(self) -> UNetArchitecture:
        levels = len(self.channel_mult)
        if any(m < 1 for m in self.channel_mult):
            raise ValueError(f"channel_mult entries must be >= 1, got {list(self.channel_mult)}")
        for level in self.attention_levels:
            if not 0 <= level < levels:
                raise ValueError(
                    f"attention_levels {list(self.attention_levels)} must lie in 0..{levels - 1} "
                    f"for channel_mult {list(self.channel_mult)}"
                )
            width = self.base_width * self.channel_mult[level]
            if width % self.attention_heads:
                raise ValueError(
                    f"attention_heads={self.attention_heads} does not divide the width {width} "
                    f"(base_width x channel_mult) of attention level {level}"
                )
        return self

    @property
    def downsampling(self) -> int:
        """Total downsampling factor 2^(levels-1); H and W are padded to a multiple of it."""
        return 2 ** (len(self.channel_mult) - 1)


class UNetSettings(UNetArchitecture):
    """Everything :class:`finescale.nn.unet.UNet` is built from: its size and its wiring."""

    in_channels: int = Field(ge=1, description="Channels of the noisy target x.")
    cond_channels: int = Field(
        ge=0,
        description="Conditioning channels concatenated to x (LR on the HR grid, statics, ...).",
    )
    out_channels: int = Field(ge=1, description="Channels of the output.")
    noise_embedding_dim: int = Field(
        default=128, ge=2, description="Fourier features of c_noise and width of the embedding MLP."
    )
    periodic_x: bool = Field(
        default=False, description="Global grid: wrap around in x (circular padding), zeros in y."
    )
    use_noise: bool = Field(
        default=True,
        description="False: no noise-level input (plain conditional UNet for regression).",
    )
    global_channels: tuple[int, ...] = Field(
        default=(),
        description="Channels of cond that are constant over the grid (time features, domain "
        "means): read at one point, they also set every block's FiLM scale and shift.",
    )

    @model_validator(mode="after")
    def _even_noise_embedding(self) -> UNetSettings:
        if self.noise_embedding_dim % 2:
            raise ValueError(
                "noise_embedding_dim must be even (sin and cos features), "
                f"got {self.noise_embedding_dim}"
            )
        outside = [c for c in self.global_channels if not 0 <= c < self.cond_channels]
        if outside:
            raise ValueError(
                f"global_channels {outside} are not channels of cond (0..{self.cond_channels - 1})"
            )
        return self
