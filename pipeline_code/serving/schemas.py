"""Response models: they document the API in the OpenAPI schema (responses are built as JSON directly).

The request schema is ``request.request_schema()`` (exact, hand-written), because the request accepts
numeric strings and is validated by the standard-library rules that the invoke Lambda shares.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelInfo(BaseModel):
    """The model that answered: identity, training time and cross-validated metrics."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(None, examples=["harmonic-arima"])
    version: str | None = Field(None, description="Registry version, when served from a registry.")
    trained_at: str | None = Field(None, examples=["2026-11-25T05:56:14+00:00"])
    metrics: dict[str, float | None] = Field(default_factory=dict)
    source: str = Field(..., description="'registry' or 'folder'.")
    calibrated_horizon: int = Field(..., description="Steps whose intervals come from CV errors directly.")


class ForecastPoint(BaseModel):
    timestamp: str = Field(..., examples=["2017-01-27"], description="ISO date of the period.")
    mean: float
    lower: float
    upper: float


class HistoryPoint(BaseModel):
    timestamp: str
    value: float


class ForecastResponse(BaseModel):
    model: ModelInfo
    conf: float
    forecasts: list[ForecastPoint]
    history: list[HistoryPoint] | None = Field(
        None, description="Recent observations, oldest first; only when the request asked for history > 0."
    )


class ErrorResponse(BaseModel):
    error: str
    request_id: str | None = None


class PingResponse(BaseModel):
    status: str
    model: dict[str, Any] | None = None
    error: str | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Invalid request (malformed JSON, unknown or invalid fields).",
        403: "Missing, unknown or revoked API key.",
        413: "Request body too large.",
        415: "Content-Type is not application/json.",
        429: "Rate limit of this API key exceeded.",
        503: "No model loaded yet.",
    }
    return {code: {"model": ErrorResponse, "description": descriptions[code]} for code in codes}
