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
    items: int | None = Field(None, description="A panel model: how many series it holds.")


class ForecastPoint(BaseModel):
    """A period: the mean and either the ``conf`` interval's bounds or one key per quantile (p10, ...)."""

    model_config = ConfigDict(extra="allow")

    timestamp: str = Field(..., examples=["2017-01-27"], description="ISO date of the period.")
    mean: float
    lower: float | None = Field(None, description="With conf: the interval's lower bound.")
    upper: float | None = Field(None, description="With conf: the interval's upper bound.")


class HistoryPoint(BaseModel):
    timestamp: str
    value: float


class ForecastResponse(BaseModel):
    """One series: the model's, or a panel model's ``item_id``."""

    model: ModelInfo
    item_id: str | None = Field(None, description="The item asked for (a panel model).")
    conf: float | None = Field(None, description="The interval level asked for (or quantiles).")
    quantiles: list[float] | None = Field(None, description="The quantiles asked for, ascending.")
    forecasts: list[ForecastPoint]
    history: list[HistoryPoint] | None = Field(
        None, description="Recent observations, oldest first; only when the request asked for history > 0."
    )


class ItemForecast(BaseModel):
    item_id: str
    forecasts: list[ForecastPoint]
    history: list[HistoryPoint] | None = None


class ItemsForecastResponse(BaseModel):
    """Several items of a panel model (``item_ids``), in the order asked."""

    model: ModelInfo
    conf: float | None = None
    quantiles: list[float] | None = None
    items: list[ItemForecast]


class ItemsPageResponse(BaseModel):
    """A page of a panel model's item ids (``list_items``), sorted."""

    model: ModelInfo
    total: int
    offset: int
    limit: int
    item_ids: list[str]
    next_offset: int | None = Field(None, description="The offset of the next page; null on the last.")


RESPONSES = ForecastResponse | ItemsForecastResponse | ItemsPageResponse


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
        404: "Unknown item (named in the message).",
        413: "Request body too large.",
        415: "Content-Type is not application/json.",
        429: "Rate limit of this API key exceeded.",
        500: "An item's stored model is unusable (named in the message; the server log says why).",
        503: "No model loaded yet.",
    }
    return {code: {"model": ErrorResponse, "description": descriptions[code]} for code in codes}
