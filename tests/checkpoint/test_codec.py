"""The request codec: JSON round-trips, the type registry, and errors that name the culprit."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scrapy import Request, Spider
from scrapy.http import FormRequest
from scrapy_playwright.page import PageMethod

from scrapy_resilience.checkpoint import codec
from scrapy_resilience.exceptions import UnserializableRequestError


class ShopSpider(Spider):
    name = "shop"

    def parse_item(self, response: Any) -> None:
        """A callback, stored by name."""

    def on_error(self, failure: Any) -> None:
        """An errback, stored by name."""


class Money:
    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency = cents, currency


def round_trip(request: Request, spider: Spider | None = None) -> Request:
    text = codec.dumps(request, spider)
    json.loads(text)  # plain JSON, nothing else
    return codec.loads(text, spider)


def test_full_request_round_trips() -> None:
    """Every attribute of a request, callbacks by name, survives the JSON round-trip."""
    spider = ShopSpider()
    request = Request(
        "http://127.0.0.1/p?q=1", method="POST", body=b"\x00\xffbinary", headers={"X-Token": "a", "Accept": ["b", "c"]},
        cookies={"session": "s"},
        meta={"depth": 2, "tags": ("a", "b"), "raw": b"\x01", "nested": {"k": [1, 2.5, None]}},
        cb_kwargs={"page": 3}, callback=spider.parse_item, errback=spider.on_error, priority=-4, dont_filter=True,
        flags=["restored"],
    )
    restored = round_trip(request, spider)
    assert restored.to_dict(spider=spider) == request.to_dict(spider=spider)
    assert restored.callback == spider.parse_item and restored.errback == spider.on_error
    assert restored.meta["tags"] == ("a", "b") and restored.meta["raw"] == b"\x01"


class ChildSpider(ShopSpider):
    name = "child"


def test_callbacks_are_named_like_scrapy_names_them() -> None:
    """Inherited callbacks get the names Request.to_dict gives them, and the request keeps its callables."""
    spider = ChildSpider()
    request = Request("http://127.0.0.1/", callback=spider.parse_item, errback=spider.on_error)
    text = codec.dumps(request, spider)
    assert json.loads(text)["callback"] == "parse_item" and json.loads(text)["errback"] == "on_error"
    assert request.callback == spider.parse_item and request.errback == spider.on_error
    assert codec.loads(text, spider).to_dict(spider=spider) == request.to_dict(spider=spider)


def test_plain_request_line_holds_only_what_differs_from_the_defaults() -> None:
    """A plain Request is stored as its URL, callback and meta; the defaults come back from Request()."""
    spider = ShopSpider()
    request = Request("http://127.0.0.1/p/1.html", callback=spider.parse_item, meta={"depth": 1})
    assert json.loads(codec.dumps(request, spider)) == {
        "url": "http://127.0.0.1/p/1.html", "callback": "parse_item", "meta": {"depth": 1}}
    assert round_trip(request, spider).to_dict(spider=spider) == request.to_dict(spider=spider)
    # Header bytes are stored as text when ASCII, tagged otherwise; both come back as the same bytes.
    headed = Request("http://127.0.0.1/", headers={"Referer": "http://127.0.0.1/list", "X-Raw": b"\xe9"})
    assert json.loads(codec.dumps(headed, None))["headers"][0] == ["Referer", ["http://127.0.0.1/list"]]
    assert round_trip(headed).headers == headed.headers
    # A value of the default's type only counts as the default: priority False is not priority 0.
    odd = Request("http://127.0.0.1/", priority=False, dont_filter=0)  # type: ignore[arg-type]
    assert set(json.loads(codec.dumps(odd, None))) == {"url", "priority", "dont_filter"}


def test_request_subclass_round_trips() -> None:
    """A FormRequest comes back as a FormRequest with its body."""
    request = FormRequest("http://127.0.0.1/login", formdata={"user": "u"})
    restored = round_trip(request)
    assert type(restored) is FormRequest and restored.body == request.body


def test_page_methods_round_trip() -> None:
    """scrapy-playwright's PageMethod objects in meta are built in."""
    meta = {"playwright": True, "playwright_page_methods": [PageMethod("wait_for_selector", "ol", timeout=500)]}
    restored = round_trip(Request("http://127.0.0.1/js/", meta=meta))
    (method,) = restored.meta["playwright_page_methods"]
    assert isinstance(method, PageMethod)
    assert (method.method, method.args, method.kwargs) == ("wait_for_selector", ("ol",), {"timeout": 500})


def test_registered_user_type_round_trips() -> None:
    """A user's own type is stored once registered with register_type."""
    codec.register_type(Money, lambda m: [m.cents, m.currency], lambda data: Money(*data))
    restored = round_trip(Request("http://127.0.0.1/", cb_kwargs={"budget": Money(250, "EUR")}))
    assert (restored.cb_kwargs["budget"].cents, restored.cb_kwargs["budget"].currency) == (250, "EUR")


def test_unknown_type_error_names_url_and_key() -> None:
    """An unregistered object in meta raises an error naming the request URL and the meta key."""
    request = Request("http://127.0.0.1/x", meta={"handle": object()})
    with pytest.raises(UnserializableRequestError, match=r"http://127\.0\.0\.1/x.*meta\['handle'\].*register_type"):
        codec.dumps(request, None)


def test_the_reserved_key_is_refused_in_meta_itself() -> None:
    """Meta passed to orjson as it is must not hold the tag key: read back, it would be taken for a tagged value."""
    for meta in ({codec.TAG: "tuple", "v": [1]}, {"nested": {codec.TAG: "bytes", "v": "AA=="}}):
        with pytest.raises(UnserializableRequestError, match="reserved key"):
            codec.dumps(Request("http://127.0.0.1/", meta=meta), None)


def test_callable_page_method_is_refused_by_key() -> None:
    """A PageMethod wrapping a callable cannot be stored by name: the error says which key holds it."""
    request = Request("http://127.0.0.1/js/", meta={"playwright_page_methods": [PageMethod(lambda page: page)]})
    with pytest.raises(UnserializableRequestError, match=r"meta\['playwright_page_methods'\].*callable"):
        codec.dumps(request, None)


def test_callback_that_is_not_a_spider_method_is_refused() -> None:
    """A lambda callback cannot be restored by name: the error names the request."""
    request = Request("http://127.0.0.1/cb", callback=lambda response: None)
    with pytest.raises(UnserializableRequestError, match=r"http://127\.0\.0\.1/cb"):
        codec.dumps(request, ShopSpider())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text().filter(lambda k: k != codec.TAG), children, max_size=4),
    max_leaves=12,
)


@given(meta=st.dictionaries(st.text(min_size=1), json_values, max_size=5))
def test_meta_values_round_trip_with_their_types(meta: dict[str, Any]) -> None:
    """Any mix of JSON values, tuples and bytes in meta comes back equal, types included."""
    restored = round_trip(Request("http://127.0.0.1/", meta=meta))
    assert restored.meta == meta
    assert repr(restored.meta) == repr(meta)


def test_values_orjson_cannot_write_round_trip() -> None:
    """NaN and infinities (orjson would write null), a 70-bit integer and a lone surrogate come back as they were."""
    meta = {"nan": float("nan"), "inf": float("inf"), "ninf": -float("inf"), "big": 2**70, "lone": "\ud800"}
    codec.dumps(Request("http://127.0.0.1/", meta=meta), None).encode()  # the journal writes UTF-8
    restored = round_trip(Request("http://127.0.0.1/", meta=meta)).meta
    assert restored["nan"] != restored["nan"]  # NaN
    assert {key: value for key, value in restored.items() if key != "nan"} == {
        key: value for key, value in meta.items() if key != "nan"}


def test_a_big_integer_alone_comes_back_an_integer() -> None:
    """Untagged texts are read on a shorter path; an integer beyond 64 bits stays an integer there too."""
    assert round_trip(Request("http://127.0.0.1/", meta={"big": 2**70})).meta == {"big": 2**70}


def test_spider_state_helpers_round_trip() -> None:
    """to_json/from_json keep tuples and bytes for spider.state and refuse unknown types with TypeError."""
    state = {"seen": ("a", 1), "blob": b"\x00"}
    assert codec.from_json(json.loads(json.dumps(codec.to_json(state)))) == state
    with pytest.raises(TypeError):
        codec.to_json({"lock": object()})


def test_encoding_leaves_no_memory_on_the_request() -> None:
    """Journaling a request does not make it bigger: Scrapy's lazily created containers stay uncreated."""
    requests = [Request(f"http://127.0.0.1/product/{n}.html") for n in range(2000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        texts = [codec.dumps(request, None) for request in requests]
        del texts
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained / len(requests) < 50
    assert round_trip(requests[0]).to_dict() == requests[0].to_dict()
