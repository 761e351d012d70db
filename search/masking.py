"""Storage passwords are never shown or stored: the one place that hides them.

Every storage URL the program is given is *registered* (:func:`register`): SQLAlchemy's
``make_url`` parses it, and its password and any ``password=`` query value, in every form they
can appear in (as typed, %-decoded, %-encoded, quoted by ``repr`` or JSON), become secrets.
:func:`mask` replaces every registered secret in a text by ``***``, and, for URLs it was never
given, hides the user-info password and ``password=`` query values by pattern. Everything
printed or written that may hold a URL goes through :func:`mask`: messages, tracebacks,
progress lines, resume hints, ``experiment.toml``.

A password holding an unencoded ``@``, ``:`` or ``/`` is read by ``make_url`` only up to the
first ``@``; the user-info is therefore also read up to the URL's last ``@``, and both readings
are secrets, so that neither half of such a password is shown.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus, unquote

PASSWORD_KEYS = ("password", "passwd", "pwd")
MASK = "***"
#: Secrets shorter than this are hidden only where they stand as a URL's password (by pattern):
#: hiding every "1" or "ab" of every message would make the output unreadable.
MIN_FREE_TEXT = 3

_secrets: set[str] = set()

# user-info password of a URL that was never registered: to the token's last "@"
_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^\s:/@?#]*:)\S*@")
_QUERY_PASSWORD = re.compile(r"\b(password|passwd|pwd)=[^&\s]*", re.IGNORECASE)
_RAW_USERINFO = (
    re.compile(r"^[A-Za-z][\w+.-]*://[^:/@?#]*:(.*)@", re.DOTALL),  # to the last "@"
    re.compile(r"^[A-Za-z][\w+.-]*://[^:/@?#]*:(.*?)@", re.DOTALL),  # to the first "@"
)


def register(url: str | None) -> None:
    """Remember the passwords of the storage URL ``url`` (any string; None is ignored)."""
    if not url:
        return
    found: list[str] = []
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.password:
            found.append(str(parsed.password))
        for key, value in parsed.query.items():
            if key.lower() in PASSWORD_KEYS:
                found += [value] if isinstance(value, str) else list(value)
    except Exception:  # not an SQLAlchemy URL (journal:PATH, a typo): patterns below
        pass
    for pattern in _RAW_USERINFO:
        match = pattern.match(url)
        if match:
            found.append(match.group(1))
    for match in re.finditer(r"(?i)(?:password|passwd|pwd)=([^&]*)", url):
        found.append(match.group(1))
    for secret in found:
        for form in _forms(secret):
            if form:
                _secrets.add(form)


def mask(text: str) -> str:
    """``text`` with every password of every storage URL replaced by ``***``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if len(secret) >= MIN_FREE_TEXT and secret in text:
            text = text.replace(secret, MASK)
    return _QUERY_PASSWORD.sub(rf"\1={MASK}", _USERINFO.sub(rf"\1{MASK}@", text))


def mask_url(url: str) -> str:
    """The storage URL ``url`` as shown and stored: registered, then masked."""
    register(url)
    return mask(url)


def _forms(secret: str) -> set[str]:
    """The ways ``secret`` can be written in a message, a URL or a file."""
    forms = {secret, unquote(secret), quote(secret, safe=""), quote_plus(secret)}
    forms |= {repr(f)[1:-1] for f in list(forms)} | {json.dumps(f)[1:-1] for f in list(forms)}
    return forms
