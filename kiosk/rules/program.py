"""The programme schema: what a merchant configures. For now, one stamp card."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kiosk.protocol.ids import ID_PATTERN


class StampCard(BaseModel):
    """N stamps earn a reward; one credit per visit; a cooldown between credits per member."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field("stamp_card", pattern="^stamp_card$")
    reward_id: str = "free-coffee"
    reward_name: str = Field("Free coffee", min_length=1, max_length=18)
    goal: int = Field(10, ge=1, le=100, description="stamps that earn the reward")
    stamps_per_visit: int = Field(1, ge=1, le=10)
    cooldown_minutes: int = Field(60, ge=0, le=7 * 24 * 60)

    @field_validator("reward_id")
    @classmethod
    def _reward_id(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError("use a-z, 0-9 and '-', e.g. 'free-coffee'")
        return value

    @property
    def cooldown(self) -> timedelta:
        return timedelta(minutes=self.cooldown_minutes)
