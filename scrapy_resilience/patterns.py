"""Built-in failure patterns: regexes over ``"ExceptionType: message"``.

They are the defaults of ``RESILIENCE_TRANSIENT_PATTERNS`` and
``RESILIENCE_PERMANENT_PATTERNS``; permanent patterns are tried first, so a
message that matches both (a DNS "no results" wrapped in a generic connection
error, say) is permanent.
"""

from __future__ import annotations

PERMANENT_PATTERNS: list[str] = [
    # A name that does not exist will not exist a second later.
    r"(?i)CannotResolveHostError|DNSLookupError|DNS lookup failed|no results",
    r"net::ERR_NAME_NOT_RESOLVED",
    r"net::ERR_INVALID_URL|net::ERR_UNKNOWN_URL_SCHEME",
    r"(?i)certificate verify failed|net::ERR_CERT_",
    r"UnsupportedURLSchemeError|NotSupported",
]

TRANSIENT_PATTERNS: list[str] = [
    r"(?i)timeout|timed out",
    r"(?i)connection (was )?(refused|reset|lost|closed|aborted)",
    r"ConnectionRefusedError|ConnectionLost|ConnectionDone|ConnectError",
    r"DownloadConnectionRefusedError|DownloadFailedError|ResponseDataLossError|ResponseFailed",
    r"net::ERR_(CONNECTION_(REFUSED|RESET|CLOSED|ABORTED|TIMED_OUT)|TIMED_OUT|EMPTY_RESPONSE|NETWORK_CHANGED)",
    r"Target page, context or browser has been closed|Browser has been closed|Page crashed",
    r"TunnelError|OSError",
]
