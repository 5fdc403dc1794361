"""A cached, concurrent chat client for any OpenAI-compatible endpoint.

>>> client = LLMClient(model="gpt-4o", cache_dir="results/dev/llm/cache")   # doctest: +SKIP
>>> result = client.chat([{"role": "user", "content": "..."}], max_tokens=512)
>>> result.text, result.prompt_tokens, result.latency_s, result.cost_usd, result.attempts

* Endpoint: ``base_url`` argument, else ``$OPENAI_BASE_URL``, else OpenAI's API. The key
  comes from ``$OPENAI_API_KEY`` (or ``api_key=``); it is never logged, never part of a cache
  key or record, and masked (as it is and base64-encoded) in every error message, response
  text and repr. A remote endpoint without a key fails at construction with a clear message;
  a local one (loopback only: 127.0.0.0/8, ``localhost``, ``::1``; not ``0.0.0.0``) needs none.
  Credentials inside the URL (``http://user:password@host/v1``: the HTTP client would send
  them as ``Authorization: Basic ...`` instead of the key) and query strings are refused
  before anything is done (:func:`check_base_url`, :class:`LLMConfigError`; the message
  never repeats them).
* Retries and timeouts are the ``openai`` client's own: ``max_retries`` (rate limits 429,
  408 / 409, 5xx, timeouts and connection errors, with exponential backoff and jitter,
  ``Retry-After`` / ``retry-after-ms`` honoured) and ``timeout_s`` per request. Every HTTP
  attempt is counted (``ChatResult.attempts``, ``stats.network_calls``). What is left after
  the retries is classified (``ChatResult.error_kind``: auth, unknown_model,
  context_overflow, bad_request, rate_limit, server_error, timeout, unreachable, error) and
  returned, not raised, so one failing system never stops the others. Fatal errors (wrong
  key, unknown model, unreachable server) stop the client's later calls at once
  (``skipped: ...``) instead of retrying each one.
* JSON mode (the one retry this module does itself): ``json_mode="schema"`` sends
  ``response_format`` with a JSON Schema, ``"object"`` sends ``{"type": "json_object"}``; an
  endpoint that rejects it (HTTP 400/422) is asked again with the next weaker mode
  (schema -> object -> none), and the rejected mode is remembered.
* Cache: one JSON file per response under ``cache_dir`` (``results/<run>/llm/cache`` in a
  run), written atomically, so a rerun, or a run resumed after a kill, repeats no finished
  call. Failed calls are not cached. ``refresh=True`` (a run's ``force``) skips cache reads
  and overwrites the entries with fresh responses.

  **The cache key** is the SHA-256 of the endpoint identity (``cache_id``; never the key)
  and the exact request body the client sends first: model, messages, temperature,
  max_tokens, ``response_format`` (with the JSON Schema), seed, stop, top_p. Any change to
  what is sent (a template, a retrieved example, a catalogue entry, the schema, a decoding
  parameter) is therefore a different key. The code digest
  (:func:`wfutils.provenance.code_digest`) is deliberately *not* part of it: the cached value
  is the endpoint's raw text only, and everything code computes from it (parsing, the
  decomposed strategy's assembly, prediction records, cost) is recomputed on every run, and
  the next call of a multi-call strategy is built from that recomputation, so its own key
  follows the code. Code changes restart the *predictions* files instead (their resume key
  includes the digest, :class:`wfutils.data.predictions.PredictionWriter`), which then
  replay from this cache at no cost. The cost of a cache hit is recomputed from the current
  price table (:mod:`wfutils.llm.pricing`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, urlparse

from wfutils.engines.base import Endpoint
from wfutils.llm.pricing import cost_usd
from wfutils.storage import atomic_write_text

__all__ = [
    "ChatResult",
    "FATAL_ERRORS",
    "LLMClient",
    "LLMConfigError",
    "ResponseCache",
    "check_base_url",
    "connect",
    "is_local_url",
    "public_url",
    "redact",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
JSON_MODES = ("none", "object", "schema")
_CACHE_VERSION = 2  # 2: keyed by the exact request body

#: Error kinds after which the client skips its later calls.
FATAL_ERRORS = frozenset({"auth", "unknown_model", "unreachable"})

Message = dict[str, Any]


class LLMConfigError(ValueError):
    """The endpoint cannot be used as configured (missing key, bad URL, bad parameter)."""


def is_local_url(base_url: str) -> bool:
    """True when ``base_url`` points at this machine's loopback interface (no API key needed, zero cost).

    Only 127.0.0.0/8, ``localhost`` and ``::1`` are local. ``0.0.0.0`` (every interface of some
    machine, not an address to call), private addresses and host names are not: a server
    reachable there may be another machine's, so it needs a key and is priced as hosted.
    """
    try:
        host = (urlparse(str(base_url)).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.version == 4:
        return address in ipaddress.ip_network("127.0.0.0/8")
    return address == ipaddress.IPv6Address("::1")


def _masked(url: str) -> str:
    """``url`` with anything before an ``@`` in its authority replaced by ``***`` (for messages)."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return (f"{scheme}://" if sep else "") + authority + slash + path.split("?")[0].split("#")[0]


def check_base_url(url: str | None) -> str | None:
    """Check an endpoint URL before anything uses it; returns it without a trailing ``/`` (None stays None).

    Raises :class:`LLMConfigError` (whose message never repeats a password) when the URL

    * carries credentials (``http://user:password@host/v1``): the HTTP client would send them
      as ``Authorization: Basic ...`` instead of the API key, and the URL would end up in
      manifests, notebooks and logs. Put the key in ``$OPENAI_API_KEY`` instead;
    * has a query string or fragment (often a key, e.g. ``?api-key=...``; the openai client
      would also glue the request path onto it);
    * is not an ``http(s)://host...`` URL.

    The pipeline calls it on ``base_url`` parameters before writing its manifest;
    :class:`LLMClient` and :func:`wfutils.llm.arm.run_arm` call it before any work.
    """
    if url is None:
        return None
    text = str(url).strip()
    shown = _masked(text)
    if "@" in text.partition("://")[2].partition("/")[0] or ("://" not in text and "@" in text.partition("/")[0]):
        raise LLMConfigError(
            f"endpoint URL {shown} carries credentials (user:password@): refused, the HTTP client would send "
            "them instead of the API key and the URL would be recorded; remove them from the URL and put the "
            "key in $OPENAI_API_KEY")
    try:
        parsed = urlparse(text)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise LLMConfigError(f"endpoint URL {shown} is not a valid http(s) URL (set OPENAI_BASE_URL or base_url=)") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LLMConfigError(f"endpoint URL {shown} is not an http(s) URL (set OPENAI_BASE_URL or base_url=)")
    if parsed.username is not None or parsed.password is not None:  # defensive: caught above
        raise LLMConfigError(f"endpoint URL {shown} carries credentials: refused (put the key in $OPENAI_API_KEY)")
    if parsed.query or parsed.fragment or "?" in text or "#" in text:
        raise LLMConfigError(
            f"endpoint URL {shown} has a query string or fragment (not shown): refused, it may hold a key and the "
            "openai client does not support it; put the key in $OPENAI_API_KEY")
    return text.rstrip("/")


def public_url(url: str) -> str:
    """``url`` without user:password and query string (safe to store in caches and results)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return parsed._replace(netloc=netloc, query="", fragment="").geturl()


def secret_forms(secret: str | None) -> list[str]:
    """The shapes ``secret`` can take on the wire or in an echo: as is, URL-encoded, base64 (also as
    the password of Basic auth, ``base64(":" + secret)``), longest first; empty for short secrets."""
    if not secret or len(secret) < 4:
        return []
    forms = {secret, quote(secret, safe="")}
    for raw in (secret, f":{secret}"):
        data = raw.encode("utf-8")
        forms.update({base64.b64encode(data).decode(), base64.b64encode(data).decode().rstrip("="),
                      base64.urlsafe_b64encode(data).decode().rstrip("=")})
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, secret: str | None) -> str:
    """Replace ``secret`` in any of its :func:`secret_forms` in ``text`` with ``***`` (nothing else changes)."""
    for form in secret_forms(secret):
        if form in text:
            text = text.replace(form, "***")
    return text


def redact(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` (as is, URL-encoded or base64), ``Authorization`` header
    values and common key shapes in ``text`` with ``***``."""
    text = scrub(text, secret)
    text = re.sub(r"(?i)\b(authorization\W{1,4}(?:basic|bearer)\s+)[A-Za-z0-9+/=_.\-]+", r"\1***", text)
    return re.sub(r"\b(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,})", "***", text)


# --------------------------------------------------------------------------- cache
class ResponseCache:
    """One JSON file per response, named by its key's SHA-256; atomic writes; safe across threads."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(endpoint_id: str, request: dict[str, Any]) -> str:
        """SHA-256 of the endpoint identity and the request body (see the module docstring)."""
        payload = {"v": _CACHE_VERSION, "endpoint": endpoint_id, "request": request}
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry stored under ``key``, or None (a miss): missing, unreadable, not JSON (however
        nested), or poisoned -- not an object, another key, or a ``result`` that is not an object.
        Never raises; the entry gets rewritten on the next successful call."""
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("result"), dict):
            return None
        return data

    def put(self, key: str, record: dict[str, Any]) -> None:
        # ASCII escapes: a response holding a lone surrogate must still be storable.
        atomic_write_text(self.path(key), json.dumps({**record, "key": key}))

    def count(self) -> int:
        """Number of cached responses."""
        return sum(1 for _ in self.root.glob("*/*.json"))


# --------------------------------------------------------------------------- results
@dataclass
class ChatResult:
    """One chat completion (or the error that prevented it)."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0  # of the network call that produced the text, retries included (kept on cache hits)
    cost_usd: float | None = 0.0
    cached: bool = False
    json_mode: str = "none"  # the mode that produced the text after any fallback
    attempts: int = 0  # HTTP attempts made by this call, the openai client's retries included (0 on a cache hit)
    error: str | None = None  # clear message; the key is never in it
    error_kind: str | None = None  # auth / unknown_model / context_overflow / unreachable / bad_request / ...

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Stats:
    calls: int = 0  # chat() calls
    network_calls: int = 0  # HTTP attempts made (including the openai client's retries)
    cache_hits: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "lock"}


_CONTEXT_PATTERNS = ("context length", "context_length", "maximum context", "too many tokens", "too long",
                     "reduce the length", "prompt is too long", "exceeds the model", "context window")
_MODEL_PATTERNS = ("model_not_found", "does not exist", "unknown model", "no such model", "pinned to",
                   "model not found", "invalid model")
_FORMAT_PATTERNS = ("response_format", "json_schema", "json_object", "json mode", "structured output")


class LLMClient:
    """Chat completions against one OpenAI-compatible endpoint and model, with a response cache.

    Parameters:
        model: the model id the endpoint answers to.
        base_url: endpoint (default ``$OPENAI_BASE_URL`` or OpenAI's API).
        api_key: default ``$OPENAI_API_KEY``; required for remote endpoints.
        cache_dir: response cache directory (None disables caching).
        cache_id: endpoint identity used in cache keys (default: ``base_url`` without
            credentials); a local server passes a port-independent id
            (``LocalServer.cache_id``) so reruns hit.
        refresh: skip cache reads (fresh responses overwrite the entries); a run's ``force``.
        max_retries: the ``openai`` client's retries after the first attempt.
        timeout_s: the ``openai`` client's timeout per request (seconds).
        price_name: name to look up in the price table (default ``model``).
        context_window / count_tokens: when both are given, a prompt whose token count plus
            ``max_tokens`` exceeds the window is refused before any call (``context_overflow``);
            endpoints that do not check it themselves (``transformers serve``) need this.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_id: str | None = None,
        refresh: bool = False,
        max_retries: int = 5,
        timeout_s: float = 600.0,
        price_name: str | None = None,
        prices: str | None = None,
        context_window: int | None = None,
        count_tokens: Callable[[Sequence[Message]], int] | None = None,
    ) -> None:
        import openai

        base_url = check_base_url(base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
        if not model:
            raise LLMConfigError("no model given")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise LLMConfigError(f"max_retries must be a non-negative int, got {max_retries!r}")
        self.base_url = base_url
        self.model = model
        self.local = is_local_url(base_url)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not key:
            if not self.local:
                raise LLMConfigError(
                    f"OPENAI_API_KEY is not set: the remote endpoint {public_url(base_url)} needs an API key "
                    f"(export OPENAI_API_KEY=..., or point OPENAI_BASE_URL at a server on this machine's loopback "
                    f"address, http://127.0.0.1:<port>/v1; 0.0.0.0 and other addresses are not local)"
                )
            key = "no-key-needed-for-local-server"
        self._key = key
        self._secret = None if key == "no-key-needed-for-local-server" else key
        self.cache_id = cache_id or public_url(base_url)
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.refresh = bool(refresh)
        self.max_retries = max_retries
        self.timeout_s = float(timeout_s)
        self.price_name = price_name or model
        self.prices = prices
        self.context_window = context_window
        self.count_tokens = count_tokens
        self.stats = _Stats()
        self._unsupported_modes: set[str] = set()
        self._fatal: tuple[str, str] | None = None
        self._attempts = threading.local()  # HTTP requests sent by the current thread's call
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._count_attempt]})
        self._client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=max_retries, timeout=self.timeout_s,
                                     http_client=http_client)

    def __repr__(self) -> str:  # never shows the key
        return f"LLMClient(model={self.model!r}, base_url={public_url(self.base_url)!r}, api_key='***', cache={str(self.cache.root) if self.cache is not None else None!r})"

    @property
    def fatal_error(self) -> str | None:
        """The message of the fatal error that stopped this client's calls, if any."""
        return self._fatal[1] if self._fatal is not None else None

    # ------------------------------------------------------------------ helpers
    def _count_attempt(self, request: Any) -> None:  # httpx event hook: runs in the calling thread
        self._attempts.n = getattr(self._attempts, "n", 0) + 1

    def _redact(self, text: str) -> str:
        return redact(text, self._key)

    def _scrub(self, text: str) -> str:
        """The response text without the key in any form (an endpoint that echoes requests)."""
        return scrub(text, self._secret) if self._secret else text

    def _cached_result(self, hit: Any) -> ChatResult | None:
        """The :class:`ChatResult` of a cache entry, or None (a miss) when the entry is not a well-formed
        successful result: whatever shape a damaged or foreign entry has, it is never trusted nor raised on."""
        result = hit.get("result") if isinstance(hit, dict) else None
        if not isinstance(result, dict):
            return None
        text = result.get("text")
        counts = [result.get("prompt_tokens", 0), result.get("completion_tokens", 0)]
        latency = result.get("latency_s", 0.0)
        finish = result.get("finish_reason")
        mode = result.get("json_mode", "none")
        if (not isinstance(text, str) or result.get("error") is not None
                or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts)
                or isinstance(latency, bool) or not isinstance(latency, (int, float)) or not math.isfinite(latency)
                or latency < 0 or not (finish is None or isinstance(finish, str)) or mode not in JSON_MODES):
            return None
        return ChatResult(text=self._scrub(text), finish_reason=finish, prompt_tokens=counts[0],
                          completion_tokens=counts[1], latency_s=float(latency), json_mode=mode, cached=True,
                          attempts=0, cost_usd=self._cost(counts[0], counts[1]))

    @staticmethod
    def _response_format(mode: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if mode == "object":
            return {"type": "json_object"}
        if mode == "schema":
            if schema is None:
                raise LLMConfigError("json_mode='schema' needs json_schema=")
            return {"type": "json_schema", "json_schema": {"name": "flow", "schema": schema, "strict": False}}
        return None

    def _classify(self, exc: Exception) -> tuple[str, str]:
        """Return (kind, message) for an exception the openai client raised after its retries."""
        import openai

        status = getattr(exc, "status_code", None)
        body = str(getattr(exc, "message", "") or exc)
        detail = getattr(exc, "body", None)
        if detail:  # servers put the reason in the JSON body ({"error": ...} or {"detail": ...})
            detail_text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
            if detail_text not in body:
                body = f"{body} {detail_text}"
        body = self._redact(body[:2000])
        low = body.lower()
        where = f"{public_url(self.base_url)} (model {self.model!r})"
        if isinstance(exc, openai.APITimeoutError):
            return "timeout", f"request to {where} timed out after {self.timeout_s:g} s ({self.max_retries} retries)"
        if isinstance(exc, openai.APIConnectionError):
            return "unreachable", f"cannot reach the server at {public_url(self.base_url)}: is it running? ({type(exc).__name__})"
        if status in (401, 403):
            return "auth", f"the endpoint {public_url(self.base_url)} rejected the API key (HTTP {status}); check OPENAI_API_KEY"
        if status == 429:
            return "rate_limit", f"rate limited by {where} after {self.max_retries} retries: {body}"
        if any(p in low for p in _CONTEXT_PATTERNS):
            return "context_overflow", f"prompt too long for {where} (context overflow): {body}"
        if status == 404 or (status in (400, 422) and any(p in low for p in _MODEL_PATTERNS)):
            return "unknown_model", f"unknown model {self.model!r} at {public_url(self.base_url)} (HTTP {status}): {body}"
        if status in (400, 422):
            return "bad_request", f"HTTP {status} from {where}: {body}"
        if status is not None and status >= 500 or status in (408, 409):
            return "server_error", f"HTTP {status} from {where} after {self.max_retries} retries: {body}"
        return "error", f"{type(exc).__name__} from {where}: {body}"

    def _record(self, result: ChatResult) -> ChatResult:
        with self.stats.lock:
            self.stats.calls += 1
            self.stats.network_calls += result.attempts
            self.stats.cache_hits += int(result.cached)
            self.stats.errors += int(not result.ok)
            if result.ok:
                self.stats.prompt_tokens += result.prompt_tokens
                self.stats.completion_tokens += result.completion_tokens
                self.stats.cost_usd += result.cost_usd or 0.0
        return result

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return cost_usd(self.price_name, prompt_tokens, completion_tokens, local=self.local, prices=self.prices)

    def request_body(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int = 512,
                     json_mode: str = "none", json_schema: dict[str, Any] | None = None, seed: int | None = None,
                     stop: Sequence[str] | None = None, top_p: float | None = None) -> dict[str, Any]:
        """The request body :meth:`chat` sends first for these arguments (what the cache key hashes)."""
        if json_mode not in JSON_MODES:
            raise LLMConfigError(f"json_mode must be one of {JSON_MODES}, got {json_mode!r}")
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                "temperature": temperature, "max_tokens": int(max_tokens)}
        response_format = self._response_format(json_mode, json_schema)
        if response_format is not None:
            body["response_format"] = response_format
        for name, value in (("seed", seed), ("stop", list(stop) if stop else None), ("top_p", top_p)):
            if value is not None:
                body[name] = value
        return body

    # ------------------------------------------------------------------ API
    def check(self, *, max_tokens: int = 1) -> ChatResult:
        """Make one tiny uncached call; a failure (key, model, server) comes back as ``error``."""
        return self.chat([{"role": "user", "content": "Reply with OK."}], max_tokens=max_tokens,
                         temperature=0.0, use_cache=False)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        json_mode: str = "none",
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        refresh: bool | None = None,
    ) -> ChatResult:
        """One chat completion. Never raises for endpoint errors: see ``result.error``.

        ``use_cache=False`` neither reads nor writes the cache; ``refresh=True`` (default: the
        client's ``refresh``) skips the read and overwrites the entry with the fresh response.
        """
        body = self.request_body(messages, temperature=temperature, max_tokens=max_tokens, json_mode=json_mode,
                                 json_schema=json_schema, seed=seed, stop=stop, top_p=top_p)
        key = ResponseCache.key(self.cache_id, body)
        caching = use_cache and self.cache is not None
        if caching and not (self.refresh if refresh is None else refresh):
            try:
                cached = self._cached_result(self.cache.get(key))
            except Exception:  # noqa: BLE001 - an unreadable entry of any shape is a miss (and gets rewritten)
                cached = None
            if cached is not None:
                return self._record(cached)
        if self._fatal is not None:
            kind, message = self._fatal
            return self._record(ChatResult(error=f"skipped: {message}", error_kind=kind))
        if self.context_window is not None and self.count_tokens is not None:
            n_prompt = int(self.count_tokens(body["messages"]))
            if n_prompt + int(max_tokens) > self.context_window:
                return self._record(ChatResult(
                    error=(f"prompt too long for model {self.model!r} (context overflow): {n_prompt} prompt tokens "
                           f"+ max_tokens {int(max_tokens)} > context window {self.context_window}"),
                    error_kind="context_overflow", prompt_tokens=n_prompt,
                ))

        # JSON-mode fallback: the requested mode, then the weaker ones not known to be rejected
        modes = [m for m in JSON_MODES[JSON_MODES.index(json_mode)::-1] if m == "none" or m not in self._unsupported_modes]
        self._attempts.n = 0
        t0 = time.perf_counter()
        for mode in modes:
            request = dict(body)
            request.pop("response_format", None)
            response_format = self._response_format(mode, json_schema)
            if response_format is not None:
                request["response_format"] = response_format
            try:
                response = self._client.chat.completions.create(**request)
            except Exception as exc:  # noqa: BLE001 - classified below; nothing escapes but our own bugs
                kind, message = self._classify(exc)
                if response_format is not None and kind in ("bad_request", "error"):
                    # the endpoint may not support this JSON mode: ask again with the next weaker
                    # one, and remember the mode when the error names it
                    if any(p in message.lower() for p in _FORMAT_PATTERNS):
                        self._unsupported_modes.add(mode)
                    continue
                if kind in FATAL_ERRORS:
                    self._fatal = (kind, message)
                return self._record(ChatResult(error=message, error_kind=kind, attempts=self._attempts.n,
                                               json_mode=mode, latency_s=round(time.perf_counter() - t0, 4)))
            latency = time.perf_counter() - t0
            choice = response.choices[0] if response.choices else None
            text = self._scrub((choice.message.content or "") if choice is not None else "")
            usage = response.usage
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            result = ChatResult(
                text=text, finish_reason=getattr(choice, "finish_reason", None),
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, latency_s=round(latency, 4),
                cost_usd=self._cost(prompt_tokens, completion_tokens), json_mode=mode, attempts=self._attempts.n,
            )
            if caching:
                self.cache.put(key, {
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "endpoint": self.cache_id,
                    "request": body, "result": result.to_dict(),
                })
            return self._record(result)
        raise AssertionError("unreachable: the last JSON mode is 'none', which sends no response_format")

    def chat_many(
        self,
        conversations: Iterable[Sequence[Message]],
        *,
        concurrency: int = 4,
        progress: bool | str = False,
        **kwargs: Any,
    ) -> list[ChatResult]:
        """Run :meth:`chat` over many conversations with at most ``concurrency`` in flight; keeps order."""
        items = list(conversations)
        if concurrency < 1:
            raise LLMConfigError(f"concurrency must be >= 1, got {concurrency}")
        results: list[ChatResult | None] = [None] * len(items)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc=progress if isinstance(progress, str) else self.model)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = {pool.submit(self.chat, conv, **kwargs): i for i, conv in enumerate(items)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        return [r for r in results if r is not None]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(endpoint: Endpoint | Any, **kwargs: Any) -> LLMClient:
    """An :class:`LLMClient` for an engine's endpoint (an :class:`~wfutils.engines.base.Endpoint`, or a running
    server or engine with an ``endpoint()`` method): its model, URL, key, cache identity and context-window
    check; ``kwargs`` (cache folder, retries, ...) go to the client and win over the endpoint's values."""
    if not isinstance(endpoint, Endpoint):
        endpoint = endpoint.endpoint()
    for name in ("cache_id", "api_key", "context_window"):
        value = getattr(endpoint, name)
        if value is not None:
            kwargs.setdefault(name, value)
    if kwargs.get("context_window") is not None and endpoint.count_tokens is not None:
        kwargs.setdefault("count_tokens", endpoint.count_tokens)
    return LLMClient(endpoint.model, base_url=endpoint.base_url, **kwargs)
