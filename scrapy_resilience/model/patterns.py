"""Built-in failure patterns: regexes over ``"ExceptionType: message"``.

They are the defaults of ``RESILIENCE_TRANSIENT_PATTERNS`` and
``RESILIENCE_PERMANENT_PATTERNS``; permanent patterns are tried first, so a
message that matches both (a DNS "no results" wrapped in a generic connection
error, say) is permanent. ``classify`` matches them against the exception and
against the exception it was raised from (Scrapy 2.19 wraps Twisted's errors and
keeps the original as ``__cause__``). An exception that matches neither list is
judged by its type (see ``scrapy_resilience.retry.classify``).
"""

from __future__ import annotations

PERMANENT_PATTERNS: list[str] = [
    # A name that does not exist will not exist a second later; a DNS server
    # that failed to answer ("Temporary failure", EAI_AGAIN) is transient, so
    # only the "does not exist" answers are listed here.
    r"(?i)no results for hostname lookup|name or service not known|nodename nor servname"
    r"|NXDOMAIN|domain name not found|host not found|does not exist",
    r"net::ERR_NAME_NOT_RESOLVED",
    r"net::ERR_(INVALID_URL|UNKNOWN_URL_SCHEME|DISALLOWED_URL_SCHEME|BLOCKED_BY_CLIENT|BLOCKED_BY_RESPONSE|ABORTED)\b",
    # A certificate that does not verify will not verify on the next attempt.
    r"(?i)certificate verify failed|net::ERR_CERT_|net::ERR_SSL_PROTOCOL_ERROR",
    r"UnsupportedURLSchemeError|NotSupported|SchemeNotSupported",
    # Scrapy cancels a download that exceeds DOWNLOAD_MAXSIZE: it would again.
    r"(?i)DownloadCancelledError|larger than download max size",
]

TRANSIENT_PATTERNS: list[str] = [
    r"(?i)timeout|timed out|took longer than",
    r"(?i)temporary failure in name resolution|EAI_AGAIN|try again",
    r"(?i)connection (was )?(refused|reset|lost|closed|aborted)",
    r"ConnectionRefusedError|ConnectionLost|ConnectionDone|ConnectError|ResponseNeverReceived",
    r"DownloadConnectionRefusedError|DownloadFailedError|ResponseDataLossError|ResponseFailed",
    r"net::ERR_(CONNECTION_(REFUSED|RESET|CLOSED|ABORTED|TIMED_OUT|FAILED)|TIMED_OUT|EMPTY_RESPONSE"
    r"|NETWORK_CHANGED|INTERNET_DISCONNECTED|ADDRESS_UNREACHABLE|SOCKET_NOT_CONNECTED|HTTP2_PROTOCOL_ERROR)",
    # The browser went away under the page: a fresh page on a relaunched
    # browser will most likely load it.
    r"TargetClosedError|Target page, context or browser has been closed|Browser has been closed"
    r"|Browser closed|Page crashed|Target crashed",
    r"TunnelError",
]
