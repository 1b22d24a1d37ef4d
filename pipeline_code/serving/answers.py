"""The answer to a valid request from the loaded model: (HTTP status, JSON body).

A single-series model answers ``{"model", "conf" | "quantiles", "forecasts"[, "history"]}``; a panel
model answers one item the same way plus ``"item_id"``, a list of items as
``{"model", "conf" | "quantiles", "items": [{"item_id", "forecasts"[, "history"]}, ...]}`` (in the
order asked), and a listing as ``{"model", "total", "offset", "limit", "item_ids", "next_offset"}``.
Forecast rows hold ``timestamp``, ``mean`` and ``lower``/``upper`` (a ``conf`` interval) or one key
per quantile (``p10``, ``p50``, ...; never crossing, see ``core.quantiles``).

Errors: more ``periods`` than the model stores (a stored-path family trained for fewer periods than the
server allows: ``Forecaster.periods_limit``): 400 naming the limit; an item on a single-series model, no
item on a panel, a listing of a single-series model: 400;
unknown items: 404 naming them; an item whose stored model turns out unusable (checked when first
asked for): 500 naming the item, the reason in the log.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline_code.engine.core.artifact import ArtifactError
from pipeline_code.engine.core.artifact_checks import CONF_CEILING
from pipeline_code.engine.core.quantiles import quantile_forecast
from pipeline_code.serving.logs import get_logger
from pipeline_code.serving.request import (
    MAX_ITEMS,
    ForecastRequest,
    ItemsRequest,
    quantile_key,
)

log = get_logger()
_COMPACT = {"separators": (",", ":"), "allow_nan": False}
SHOWN_UNKNOWN = 5  # unknown items named in a 404


class ItemUnusable(RuntimeError):
    """An item whose stored model cannot forecast (found when it is first asked for)."""


def answer(loaded: Any, request: ForecastRequest | ItemsRequest) -> tuple[int, bytes]:
    """(status, body) for a valid request; ``loaded`` is the app's LoadedModel."""
    panel = loaded.panel
    if isinstance(request, ItemsRequest):
        if panel is None:
            return _error(400, "this model forecasts a single series; it has no items to list")
        return 200, _listing(loaded, panel, request)
    if panel is None:
        if request.item_ids is not None:
            field = "item_ids" if request.many else "item_id"
            return _error(400, f"this model forecasts a single series; remove {field}")
        too_many = _too_many_periods(loaded.forecaster, request, loaded.max_periods)
        if too_many:
            return _error(400, too_many)
        return 200, _body(loaded, request, [_forecast_json(loaded.forecaster, request)])
    if request.item_ids is None:
        return _error(400, f"this model holds {len(panel)} series: name one with item_id (or up to {MAX_ITEMS} "
                           'with item_ids); list them with {"list_items": true}')
    unknown = [item for item in request.item_ids if item not in panel]
    if unknown:
        more = f" and {len(unknown) - SHOWN_UNKNOWN} more" if len(unknown) > SHOWN_UNKNOWN else ""
        return _error(404, f"unknown item{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(repr(u) for u in unknown[:SHOWN_UNKNOWN])}{more}")
    try:
        forecasters = [_item_forecaster(panel, item) for item in request.item_ids]
    except ItemUnusable as err:
        return _error(500, str(err))
    for item, forecaster in zip(request.item_ids, forecasters):
        too_many = _too_many_periods(forecaster, request, loaded.max_periods, item)
        if too_many:
            return _error(400, too_many)
    return 200, _body(loaded, request, [_forecast_json(f, request, item)
                                        for item, f in zip(request.item_ids, forecasters)])


def _too_many_periods(forecaster: Any, request: ForecastRequest, server_limit: int,
                      item: str | None = None) -> str | None:
    """Why ``request.periods`` is more than ``forecaster`` can forecast, or None."""
    limit = forecaster.periods_limit(server_limit)
    if request.periods <= limit:
        return None
    whose = "this model" if item is None else f"the model of item {item!r}"
    return (f"periods: {request.periods} is more than {whose} forecasts ({limit}: it was trained for at most "
            f"{limit} periods, serve.max_periods at training); ask for at most {limit}")


def _item_forecaster(panel: Any, item: str) -> Any:
    try:
        return panel.forecaster(item)
    except (ArtifactError, ValueError) as err:
        log.error("item model unusable", extra={"event": "item_unusable", "item_id": item, "reason": str(err)})
        raise ItemUnusable(f"the model of item {item!r} is unusable (the server log says why)") from None


def _forecast_json(forecaster: Any, request: ForecastRequest, item: str | None = None) -> str:
    """One series' members of the answer: ``"item_id"``, ``"forecasts"`` and ``"history"``."""
    if request.quantiles is not None:
        forecast = quantile_forecast(forecaster, request.periods, request.quantiles)
        keys = [quantile_key(q) for q in forecast.quantiles]
        rows = [{"timestamp": ts.isoformat(), "mean": float(m), **dict(zip(keys, map(float, column)))}
                for ts, m, column in zip(forecast.timestamps, forecast.mean, forecast.values.T, strict=True)]
    else:
        # Quantiles need 1 - (1 - conf)/2 < 1 in floating point: conf above CONF_CEILING (at most
        # 1.1e-16 from it) is computed at CONF_CEILING; the response echoes the conf asked for.
        rows = forecaster.predict(request.periods, min(request.conf, CONF_CEILING)).records()
    parts = [] if item is None else ['"item_id":', json.dumps(item), ","]
    parts += ['"forecasts":', json.dumps(rows, **_COMPACT)]
    if request.history:
        parts += [',"history":', json.dumps(forecaster.history[-request.history:], **_COMPACT)]
    return "".join(parts)


def _body(loaded: Any, request: ForecastRequest, parts: list[str]) -> bytes:
    level = (f'"quantiles":{json.dumps(list(request.quantiles))}' if request.quantiles is not None
             else f'"conf":{json.dumps(request.conf)}')
    head = f'{{"model":{loaded.info_json},{level},'
    if request.many:
        return (head + '"items":[' + ",".join("{" + part + "}" for part in parts) + "]}").encode()
    return (head + parts[0] + "}").encode()


def _listing(loaded: Any, panel: Any, request: ItemsRequest) -> bytes:
    page = panel.items[request.offset:request.offset + request.limit]
    end = request.offset + len(page)
    document = {"total": len(panel), "offset": request.offset, "limit": request.limit, "item_ids": page,
                "next_offset": end if end < len(panel) else None}
    return f'{{"model":{loaded.info_json},{json.dumps(document, **_COMPACT)[1:]}'.encode()


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()
