"""Requests as JSON, for the frontier journal and checkpoints; never pickle.

A request is turned into a dict by Scrapy's own ``Request.to_dict(spider=...)``
(callbacks and errbacks become method *names* of the spider) and back by
``scrapy.utils.request.request_from_dict``. Everything in that dict must then
be JSON: plain JSON values pass through, ``bytes`` and ``tuple`` are tagged so
they come back with their type, and other types need an entry in a small
registry (scrapy-playwright's ``PageMethod`` is built in; users add their own
with ``register_type``). Anything else raises ``UnserializableRequestError``
naming the request URL and the meta (or cb_kwargs) key, so the user learns
what to fix instead of losing the request silently after a crash.

Every scheduled request is encoded once, on the reactor thread, so the text
is written by orjson (a tenth of the standard library's time); what orjson
refuses (an integer beyond 64 bits, a lone surrogate) falls back to the
standard library, and both are read back by ``json.loads``.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import attrs
import orjson
from scrapy import Request, Spider
from scrapy.utils.request import request_from_dict

from scrapy_resilience.exceptions import UnserializableRequestError

TAG = "__resilience_type__"  # the key of a tagged value: {TAG: name, "v": encoded}


@attrs.frozen
class _Codec:
    cls: type
    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]


_registry: dict[str, _Codec] = {}


def register_type(cls: type, to_json: Callable[[Any], Any], from_json: Callable[[Any], Any]) -> None:
    """Let meta and cb_kwargs values of type ``cls`` be checkpointed.

    ``to_json(value)`` returns JSON-serializable data (which may itself hold
    registered types) and ``from_json(data)`` rebuilds the value. Exact types
    only: a subclass needs its own registration.
    """
    _registry[f"{cls.__module__}.{cls.__qualname__}"] = _Codec(cls, to_json, from_json)


def _register_builtins() -> None:
    try:
        from scrapy_playwright.page import PageMethod
    except ImportError:  # scrapy-playwright is optional
        return

    def page_method_to_json(value: PageMethod) -> Any:
        if not isinstance(value.method, str):
            # A callable cannot be stored by name; the error says which key holds it.
            raise TypeError(f"PageMethod with a callable ({value.method!r}) instead of a method name")
        return {"method": value.method, "args": list(value.args), "kwargs": value.kwargs}

    def page_method_from_json(data: Any) -> PageMethod:
        return PageMethod(data["method"], *data["args"], **data["kwargs"])

    register_type(PageMethod, page_method_to_json, page_method_from_json)


_register_builtins()


class _Unencodable(Exception):
    """Internal: the value at some path is not JSON; carries the reason."""


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        # orjson writes NaN and infinities as null: tagged, they come back.
        return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise _Unencodable("a dict with non-string keys")
        if TAG in value:
            raise _Unencodable(f"a dict using the reserved key {TAG!r}")
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [_encode(item) for item in value]}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    codec = _registry.get(name)
    if codec is None:
        raise _Unencodable(f"a {name} (register it with scrapy_resilience.checkpoint.codec.register_type)")
    try:
        data = codec.to_json(value)
    except Exception as exc:
        raise _Unencodable(str(exc)) from exc
    return {TAG: name, "v": _encode(data)}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    name = value.get(TAG)
    if name is None:
        return {key: _decode(item) for key, item in value.items()}
    if name == "tuple":
        return tuple(_decode(item) for item in value["v"])
    if name == "bytes":
        return base64.b64decode(value["v"])
    if name == "float":
        return float(value["v"])
    codec = _registry.get(name)
    if codec is None:
        raise ValueError(f"a checkpointed request holds a {name}, which is not registered in this process")
    return codec.from_json(_decode(value["v"]))


def to_json(value: Any) -> Any:
    """``value`` as JSON data with the registry's tags (for ``spider.state``); raises TypeError."""
    try:
        return _encode(value)
    except _Unencodable as exc:
        raise TypeError(str(exc)) from None


def from_json(data: Any) -> Any:
    """The value that ``to_json`` stored."""
    return _decode(data)


# Request attributes Scrapy 2.19 creates on first access (None until then).
_LAZY_SLOTS = ("_headers", "_cookies", "_flags", "_cb_kwargs", "_meta")


def _callback_name(spider: Spider | None, function: Any) -> str | None:
    """What ``to_dict`` stores for a callback or errback (a name given as text stays), if it finds it directly."""
    return _method_name(spider, function) if callable(function) else function


def _method_name(spider: Spider | None, function: Any) -> str | None:
    """The name of ``function`` if it is a method of ``spider`` found under its own name, else None."""
    if spider is None or getattr(function, "__self__", None) is not spider:
        return None
    name = getattr(function, "__name__", None)
    if name is None:
        return None
    return name if getattr(type(spider), name, None) is getattr(function, "__func__", None) else None


def _to_dict(request: Request, spider: Spider | None) -> dict[str, Any]:
    """``Request.to_dict(spider=spider)``, cheaper, and leaving nothing behind on the request.

    Two costs of ``to_dict`` matter for a journal that stores every request:

    - it finds a callback's name with ``inspect.getmembers(spider)``, which
      reads every attribute of the spider (properties included) per request;
      a spider's own method is named here directly, and the request's public
      ``callback``/``errback`` are set to that name for the call only;
    - it reads ``headers``, ``cookies``, ``flags``, ``cb_kwargs`` and ``meta``,
      which Scrapy 2.19 creates lazily: empty objects, about 400 bytes, on
      every pending request. Those still empty afterwards are put back to "not
      created" (the codec's only access to private slots).
    """
    unset = [name for name in _LAZY_SLOTS if getattr(request, name, True) is None]
    callback, errback = request.callback, request.errback
    names = [_method_name(spider, f) if callable(f) else None for f in (callback, errback)]
    try:
        # A name where a callable is expected: what to_dict itself returns for them.
        if names[0] is not None:
            request.callback = names[0]  # type: ignore[assignment]
        if names[1] is not None:
            request.errback = names[1]  # type: ignore[assignment]
        return request.to_dict(spider=spider)
    finally:
        request.callback, request.errback = callback, errback
        for name in unset:
            if not getattr(request, name):
                setattr(request, name, None)


# Values that orjson writes and json.loads reads back as they were: a meta
# (or cb_kwargs) holding only these is handed to orjson as it is, not copied.
_ATOMS = frozenset({str, int, bool, type(None)})


def _encode_mapping(request: Request, field: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """``meta`` or ``cb_kwargs`` as JSON data: the mapping itself when it needs no tag (the common case)."""
    if TAG not in mapping:
        for value in mapping.values():
            if type(value) not in _ATOMS:
                break
        else:
            return mapping
    out = {}
    for key, value in mapping.items():
        try:
            if key == TAG:
                raise _Unencodable(f"the reserved key {TAG!r}")
            out[key] = _encode(value)
        except _Unencodable as exc:
            raise _unserializable(request, f"{field}[{key!r}]", exc) from None
    return out


def _header(value: Any) -> Any:
    # Headers hold bytes, and turn text back into bytes as UTF-8: ASCII (nearly
    # every header: a Referer in every followed link) is stored as plain text.
    if type(value) is bytes and value.isascii():
        return value.decode("ascii")
    return _encode(value)


def _encode_headers(headers: Any) -> list[list[Any]]:
    # Headers is a dict of normalized names to lists of bytes; its own items() rebuilds each pair.
    try:
        # Nearly always: ASCII names and single ASCII values (a Referer on every followed link).
        return [[name.decode("ascii"), [values[0].decode("ascii")] if len(values) == 1
                 else [value.decode("ascii") for value in values]] for name, values in dict.items(headers)]
    except (AttributeError, UnicodeDecodeError):
        return [[_header(name), [_header(value) for value in values]] for name, values in dict.items(headers)]


def _unserializable(request: Request, where: str, exc: Exception) -> UnserializableRequestError:
    return UnserializableRequestError(f"Request {request.url} cannot be checkpointed: {where} holds {exc}")


def _encode_field(request: Request, field: str, value: Any) -> Any:
    if field in ("meta", "cb_kwargs"):
        return _encode_mapping(request, field, value)
    if field == "headers":
        return _encode_headers(value)
    if type(value) is str:  # url, callback and errback names, method, encoding
        return value
    try:
        return _encode(value)
    except _Unencodable as exc:
        raise _unserializable(request, f"its {field}", exc) from None


def _plain_request(request: Request, spider: Spider | None) -> dict[str, Any] | None:
    """The JSON data of a plain ``Request``: what differs from ``Request()``; None if a callback is not named directly.

    Most requests differ in url, callback and meta only: a line a third the
    size of ``to_dict``'s, cheaper to encode, write and replay
    (``request_from_dict`` passes only the fields present). A value of the
    default's type only counts as the default (priority False is not 0).
    This runs for every scheduled request, so it reads the attributes one
    by one rather than looping over field names; the containers Scrapy
    creates on first access are read through their slots, None until then
    (a slot missing, on an older Scrapy, reads as "maybe filled").
    """
    data: dict[str, Any] = {"url": request.url}
    if request.callback is not None:
        if (callback := _callback_name(spider, request.callback)) is None:
            return None  # to_dict finds it, or says why it cannot
        data["callback"] = callback
    if request.errback is not None:
        if (errback := _callback_name(spider, request.errback)) is None:
            return None
        data["errback"] = errback
    if request.method != "GET":
        data["method"] = request.method
    if request.encoding != "utf-8":
        data["encoding"] = request.encoding
    if type(request.priority) is not int or request.priority != 0:
        data["priority"] = request.priority
    if request.dont_filter is not False:
        data["dont_filter"] = request.dont_filter
    if request.body:
        data["body"] = _encode_field(request, "body", request.body)
    if getattr(request, "_headers", True) is not None and request.headers:
        data["headers"] = _encode_headers(request.headers)
    if getattr(request, "_cookies", True) is not None and request.cookies:
        data["cookies"] = _encode_field(request, "cookies", request.cookies)
    if getattr(request, "_meta", True) is not None and request.meta:
        data["meta"] = _encode_mapping(request, "meta", request.meta)
    if getattr(request, "_flags", True) is not None and request.flags:
        data["flags"] = _encode_field(request, "flags", request.flags)
    if getattr(request, "_cb_kwargs", True) is not None and request.cb_kwargs:
        data["cb_kwargs"] = _encode_mapping(request, "cb_kwargs", request.cb_kwargs)
    return data


def encode_request(request: Request, spider: Spider | None) -> dict[str, Any]:
    """The JSON-ready dict of ``request``; raises UnserializableRequestError.

    Subclasses (FormRequest, JsonRequest, ...) may derive one field from
    another in their ``__init__``: they go through ``to_dict`` and keep every field.
    """
    data = _plain_request(request, spider) if type(request) is Request else None
    if data is not None:
        return data
    try:
        raw = _to_dict(request, spider)
    except ValueError as exc:  # a callback that is not a method of the spider
        raise UnserializableRequestError(f"Request {request.url} cannot be checkpointed: {exc}") from None
    return {field: _encode_field(request, field, value) for field, value in raw.items()}


def decode_request(data: dict[str, Any], spider: Spider | None) -> Request:
    """Rebuild the request that ``encode_request`` stored."""
    raw = {field: _decode(value) for field, value in data.items() if field != "headers"}
    raw["headers"] = {_decode(name): [_decode(v) for v in values] for name, values in data.get("headers", [])}
    return request_from_dict(raw, spider=spider)


def dumps(request: Request, spider: Spider | None) -> str:
    """``encode_request`` as one compact JSON text."""
    data = encode_request(request, spider)
    try:
        return orjson.dumps(data).decode()
    except TypeError:  # orjson.JSONEncodeError: what only the standard library writes
        # ASCII: a lone surrogate becomes an escape, so the journal line still encodes to UTF-8.
        return json.dumps(data, separators=(",", ":"))


def loads(text: str, spider: Spider | None) -> Request:
    """The request of a ``dumps`` text."""
    # Read by the standard library: orjson reads an integer beyond 64 bits as a float.
    data = json.loads(text)
    if TAG in text:  # a C substring search: most texts hold nothing tagged
        return decode_request(data, spider)
    # Nothing to decode: the data is the request's own but for the headers, stored as pairs.
    if "headers" in data:
        data["headers"] = dict(data["headers"])
    return request_from_dict(data, spider=spider)
