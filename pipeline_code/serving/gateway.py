"""The local stand-in for API Gateway: API keys (issue, revoke) and a per-key usage plan (rate + burst).

Key file (JSON, mode 0600; the keys are stored as issued so the local client can read them)::

    {"keys": [{"id": "key-3f9c1a2b", "key": "fmk_...", "created": "2026-11-25T06:00:00+00:00",
               "revoked": false, "revoked_at": null}]}

The server re-reads the file when it changes, so ``forecast-mlops serve --api-key-file F --revoke-key ID``
takes effect on a running server at its next request.

Usage plan: like an API Gateway usage plan's throttle, a steady ``rate`` (requests per second) with
bursts of up to ``burst`` requests: every key may make at most ``burst`` requests in any 1-second
window and at most ``rate * 60`` requests in any 60-second window (moving windows of the ``limits``
library, in memory, per process).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

KEY_PREFIX = "fmk_"
DEFAULT_RATE = 10.0
DEFAULT_BURST = 20


def default_key_file() -> Path:
    """``$FORECAST_MLOPS_KEY_FILE``, else ``$XDG_CONFIG_HOME/forecast-mlops/api-keys.json``."""
    explicit = os.environ.get("FORECAST_MLOPS_KEY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "forecast-mlops" / "api-keys.json"


class KeyFileError(ValueError):
    """An unreadable or malformed key file."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    key: str
    created: str
    revoked: bool = False
    revoked_at: str | None = None

    def public(self) -> dict[str, Any]:
        """Everything but the secret."""
        return {"id": self.id, "created": self.created, "revoked": self.revoked, "revoked_at": self.revoked_at}


class KeyStore:
    """The key file, re-read when it changes on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: list[ApiKey] = []
        self._by_digest: dict[bytes, ApiKey] = {}
        self._reload()

    @classmethod
    def open_or_create(cls, path: str | Path) -> tuple["KeyStore", ApiKey | None]:
        """Open the key file, creating it with one new key when absent; returns (store, new key or None)."""
        path = Path(path)
        if path.exists():
            return cls(path), None
        key = _new_key()
        _write(path, [key])
        return cls(path), key

    # --- reading -----------------------------------------------------------------------------
    def keys(self) -> list[ApiKey]:
        self._refresh()
        return list(self._keys)

    def active_key(self) -> ApiKey | None:
        """The newest key that is not revoked (what the local client uses by default)."""
        active = [k for k in self.keys() if not k.revoked]
        return active[-1] if active else None

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The active key matching ``presented``, or None (missing, unknown or revoked)."""
        if not presented:
            return None
        self._refresh()
        key = self._by_digest.get(_digest(presented))
        return key if key is not None and not key.revoked else None

    # --- changing ----------------------------------------------------------------------------
    def issue(self) -> ApiKey:
        with self._lock:
            self._reload()
            key = _new_key()
            _write(self.path, [*self._keys, key])
            self._reload()
        return key

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke by id (or by the key itself); raises KeyError when no such key."""
        with self._lock:
            self._reload()
            updated, found = [], None
            for key in self._keys:
                if key.id == key_id or secrets.compare_digest(key.key.encode(), key_id.encode()):
                    key = ApiKey(key.id, key.key, key.created, True, key.revoked_at or _now())
                    found = key
                updated.append(key)
            if found is None:
                raise KeyError(key_id)
            _write(self.path, updated)
            self._reload()
        return found

    # --- internals ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            return  # keep the last good keys if the file vanishes mid-rewrite
        if (st.st_mtime_ns, st.st_size) != self._stamp:
            with self._lock:
                self._reload()

    def _reload(self) -> None:
        try:
            st = self.path.stat()
            document = json.loads(self.path.read_text())
            keys = [
                ApiKey(
                    id=str(item["id"]), key=str(item["key"]), created=str(item.get("created", "")),
                    revoked=bool(item.get("revoked", False)), revoked_at=item.get("revoked_at"),
                )
                for item in document["keys"]
            ]
        except FileNotFoundError:
            raise KeyFileError(f"API key file {str(self.path)!r} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise KeyFileError(f"API key file {str(self.path)!r} is malformed: {err}") from None
        self._keys = keys
        self._by_digest = {_digest(k.key): k for k in keys}
        self._stamp = (st.st_mtime_ns, st.st_size)


class UsagePlan:
    """Per-key throttling with the ``limits`` library (moving windows in memory)."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> None:
        from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items = [
            RateLimitItemPerSecond(burst, 1),
            RateLimitItemPerMinute(max(1, math.floor(rate * 60)), 1),
        ]

    def hit(self, key_id: str) -> int | None:
        """Count one request; None when allowed, else the seconds to wait (Retry-After)."""
        for item in self._items:
            if not self._limiter.test(item, key_id):
                reset = self._limiter.get_window_stats(item, key_id).reset_time
                return max(1, math.ceil(reset - time.time()))
        for item in self._items:
            self._limiter.hit(item, key_id)
        return None


class ApiKeyGuard:
    """What ``create_app(..., api_keys=...)`` takes: the key store and the usage plan."""

    def __init__(self, store: KeyStore, plan: UsagePlan | None = None) -> None:
        self.store = store
        self.plan = plan or UsagePlan()


def _new_key() -> ApiKey:
    return ApiKey(id=f"key-{secrets.token_hex(4)}", key=KEY_PREFIX + secrets.token_urlsafe(32), created=_now())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _write(path: Path, keys: list[ApiKey]) -> None:
    """Atomically replace the key file, created with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"keys": [k.__dict__ for k in keys]}
    fd, tmp = tempfile.mkstemp(prefix=".api-keys-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=1)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
