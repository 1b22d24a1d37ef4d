"""The local stand-in for API Gateway: API keys (issue, revoke) and a per-key usage plan (rate + burst).

Key file (JSON, mode 0600; the keys are stored as issued so the local client can read them)::

    {"keys": [{"id": "key-3f9c1a2b", "key": "fmk_...", "created": "2026-11-25T06:00:00+00:00",
               "revoked": false, "revoked_at": null}]}

The server re-reads the file when it changes, so ``forecast-mlops serve --api-key-file F --revoke-key ID``
takes effect on a running server at its next request. A file that turns unreadable or malformed is
logged once (naming the file and the problem) and every keyed request gets 503 until it is fixed: no
key is trusted from a file the server cannot read.

Usage plan: API Gateway's throttle, a token bucket per key (see throttle.py): up to ``burst`` requests
at once, ``rate`` requests per second on average (in memory, per process).
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
from typing import Any, Callable

from pipeline_code.serving.logs import get_logger
from pipeline_code.serving.throttle import TokenBuckets

log = get_logger("gateway")
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
    """The key file, re-read when it changes on disk; ``error`` says why it is unusable (None when fine)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: list[ApiKey] = []
        self._by_digest: dict[bytes, ApiKey] = {}
        self.error: str | None = None
        self._reload()  # a bad file at start-up raises KeyFileError

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
        """The active key matching ``presented`` (surrounding whitespace ignored), or None (missing,
        unknown or revoked); raises KeyFileError while the key file is unusable."""
        self._refresh()
        if self.error is not None:
            raise KeyFileError(self.error)
        presented = (presented or "").strip()  # HTTP parsers trim only leading whitespace
        if not presented:
            return None
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
        """Re-read the file when it changed; a bad file empties the store and sets ``error``."""
        try:
            st = self.path.stat()
        except OSError:
            return  # keep the last good keys if the file vanishes mid-rewrite
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            previous = self.error
            try:
                self._reload()
            except KeyFileError as err:
                if str(err) != previous:
                    log.error("API key file unusable; keyed requests get 503 until it is fixed",
                              extra={"event": "key_file_error", "reason": str(err)})
                self._keys, self._by_digest, self._stamp, self.error = [], {}, stamp, str(err)
                return
            if previous is not None:
                log.info("API key file usable again", extra={"event": "key_file_reloaded", "keys": len(self._keys)})

    def _reload(self) -> None:
        try:
            st = self.path.stat()
            document = json.loads(self.path.read_text(encoding="utf-8"))
            keys = [
                ApiKey(
                    id=str(item["id"]), key=str(item["key"]), created=str(item.get("created", "")),
                    revoked=_flag(item.get("revoked", False)), revoked_at=item.get("revoked_at"),
                )
                for item in document["keys"]
            ]
        except FileNotFoundError:
            raise KeyFileError(f"API key file {str(self.path)!r} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
            problem = (f"missing field {err}" if isinstance(err, KeyError)
                       else "nested too deeply" if isinstance(err, RecursionError) else str(err))
            raise KeyFileError(f"API key file {str(self.path)!r} is malformed ({problem}); expected "
                               '{"keys": [{"id": ..., "key": ..., ...}]}') from None
        self._keys = keys
        self._by_digest = {_digest(k.key): k for k in keys}
        self._stamp = (st.st_mtime_ns, st.st_size)
        self.error = None


class UsagePlan:
    """Per-key throttling as API Gateway's usage plans do it: a token bucket of ``burst`` tokens per key,
    refilled at ``rate`` per second."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self._buckets = TokenBuckets(rate, burst, clock)

    def hit(self, key_id: str) -> int | None:
        """Count one request; None when allowed, else the whole seconds to wait (Retry-After)."""
        wait = self._buckets.take(key_id)
        return None if wait == 0 else max(1, math.ceil(wait))


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


def exposure_warning(path: Path) -> str | None:
    """A warning when the key file may be read by other users than its owner (it is written 0600)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return (f"API key file {path} has mode {mode:04o}: other users may read the keys; "
                f"chmod 600 {path}")
    return None


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


def _flag(value: object) -> bool:
    """A key's ``revoked``: true or false (a string such as "false" would read as revoked)."""
    if not isinstance(value, bool):
        raise TypeError(f"'revoked' must be true or false, found {value!r}")
    return value
