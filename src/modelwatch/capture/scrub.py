"""Secret scrubbing: credentials never reach a span, a metric, a log line or a health response.

The one scrubber of the project. Everything modelwatch exports or logs that may carry text it
did not write goes through it: exception messages and stack traces (span status, exception
events, the route span), span attribute strings, captured prompts and completions, health
check errors and their log lines, and modelwatch's own internal-error log lines.

What is recognised (each form is in the test table, ``tests/capture/test_scrub_forms.py``):

- ``key=value`` / ``key: value`` / ``"key": "value"`` pairs whose key *ends* in a secret word,
  with any prefix: ``password``, ``passwd``, ``secret``, ``token``, ``api_key``/``apikey``,
  ``access_key``, ``secret_key``, ``private_key``, ``account_key``, ``credential(s)``,
  ``auth`` — so ``DB_PASSWORD=``, ``client_secret=``, ``refresh_token=``,
  ``OPENAI_API_KEY=``, ``aws_secret_access_key=``, ``AccountKey=`` (env, URL query, JSON,
  Python repr and header forms; quoted values whole);
- ``Authorization:`` / ``Proxy-Authorization:`` headers, whatever the scheme (``Bearer``,
  ``Basic``, ``Token``, ``ApiKey``, …): the credential after the scheme, not just the scheme;
  a bare ``Bearer``/``Basic``/``Token`` credential;
- URL credentials (``scheme://user:pass@host``) and secret query parameters (``?key=``,
  ``&sig=``, ``X-Amz-Signature=``, ``X-Goog-Signature=``, ``code=`` …);
- token shapes: Hugging Face ``hf_…``, OpenAI/Anthropic ``sk-…``, Stripe ``sk_live_…``,
  AWS access key ids ``AKIA…``/``ASIA…``, Google API keys ``AIza…`` and OAuth ``ya29.…``,
  GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_``, Slack ``xox?-…`` and
  webhook URLs, JWTs (``eyJ….eyJ….…``), PEM private key blocks (also cut short).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

REDACTED: Final = "[REDACTED]"

#: Longest error text a health response carries: enough to diagnose, too short for a dump.
MAX_ERROR_CHARS: Final = 200

# a key ending in one of these words names a secret (any prefix: DB_PASSWORD, client_secret)
_SECRET_WORDS: Final = (
    r"pass(?:word|wd|phrase)?|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key"  # noqa: S105
    r"|private[_-]?key|account[_-]?key|shared[_-]?access[_-]?key|subscription[_-]?key"
    r"|signing[_-]?key|encryption[_-]?key|master[_-]?key|credentials?|auth|session[_-]?id"
    r"|cookie|x-api-key|signature"
)
# a value: quoted whole, or up to a separator
_VALUE: Final = r"(?!\[REDACTED\])(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\s\"'&,;)}\]<>]+)"


def _keep_quotes(match: re.Match[str]) -> str:
    value = match.group(match.lastindex or 0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return match.group(1) + quote + REDACTED + quote


_Sub = str | Callable[[re.Match[str]], str]

_PATTERNS: Final[tuple[tuple[re.Pattern[str], _Sub], ...]] = (
    # PEM private key blocks, also cut short (no END line)
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)"
        ),
        REDACTED,
    ),
    # Authorization headers: the credential after any scheme word
    (
        re.compile(
            r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?:bearer|basic|token|apikey|api-key|digest|negotiate|ntlm|aws4-hmac-sha256|key)\s+)?)"
            r"([^\s\"',;]+(?:[ \t]+[^\s\"',;=]+=[^\s\"',;]+)*)"
        ),
        lambda m: m.group(1) + REDACTED,
    ),
    # a bare scheme + credential
    (
        re.compile(
            r"(?i)\b(bearer|basic|token)(\s+)(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}"
        ),
        r"\1\2" + REDACTED,
    ),
    # URL credentials: scheme://user:pass@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # secret query parameters whose names are not secret words
    (
        re.compile(
            r"(?i)([?&](?:key|sig|signature|code|x-amz-signature|x-amz-credential"
            r"|x-amz-security-token|x-goog-signature|x-goog-credential)=)([^&#\s\"'<>]+)"
        ),
        r"\1" + REDACTED,
    ),
    # key=value / key: value / "key": "value" whose key ends in a secret word
    (
        re.compile(
            r"(?i)((?<![A-Za-z0-9])[\"']?[A-Za-z0-9_.-]*?(?:" + _SECRET_WORDS + r")[\"']?"
            r"\s*(?:[:=]|=>)\s*)" + _VALUE
        ),
        _keep_quotes,
    ),
    # token shapes
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), REDACTED),
    (re.compile(r"\bya29\.[0-9A-Za-z_.-]{10,}"), REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"(?i)hooks\.slack\.com/services/[A-Za-z0-9/]+"), "hooks.slack.com/" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
)

# cheap pre-check: text with none of these cannot match any pattern
_QUICK: Final = re.compile(
    r"(?i)pass|secret|token|key|auth|credential|cookie|session|bearer|basic|://|[?&](?:sig|code)"
    r"|hf_|sk-|sk_|rk_|pk_|akia|asia|agpa|aida|aroa|aiza|ya29|gh[pousr]_|github_pat|xox|eyj"
    r"|slack|private|signature"
)


def scrub(text: str) -> str:
    """Return ``text`` with anything that looks like a secret replaced by ``[REDACTED]``.

    >>> scrub("401 for token hf_abcdefghijklmnop")
    '401 for token [REDACTED]'
    >>> scrub("DB_PASSWORD=hunter2 psql failed")
    'DB_PASSWORD=[REDACTED] psql failed'
    """
    if not text or not _QUICK.search(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(value: object) -> object:
    """Scrub a span attribute value: strings and sequences of strings; others pass through."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) if isinstance(v, str) else v for v in value)
    return value


def scrub_line(text: str, max_chars: int = MAX_ERROR_CHARS) -> str:
    """Error text fit for a public endpoint or a log field: secrets removed, folded onto one
    line (no stack trace slips through) and capped at ``max_chars`` characters."""
    text = " ".join(scrub(text).split())
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, scrubbed (never raises: a broken ``__str__`` gives the type name)."""
    try:
        return scrub(str(exc))
    except Exception:
        return type(exc).__name__


def record_exception(span: object, exc: BaseException, status: str | None = None) -> None:
    """Put ``exc`` on ``span`` as ``Span.record_exception`` and ``set_status`` would, with the
    message and the whole stack trace (chained causes included) scrubbed first.

    ``status``: the status description (default ``"<Type>: <message>"``), scrubbed too.
    """
    import traceback

    from opentelemetry.trace import Status, StatusCode

    exc_type = type(exc)
    message = exception_text(exc)
    stack = scrub("".join(traceback.format_exception(exc_type, exc, exc.__traceback__)))
    span.add_event(  # type: ignore[attr-defined]
        "exception",
        {
            "exception.type": f"{exc_type.__module__}.{exc_type.__qualname__}",
            "exception.message": message,
            "exception.stacktrace": stack,
        },
    )
    described = scrub(status) if status is not None else f"{exc_type.__name__}: {message}"
    span.set_status(Status(StatusCode.ERROR, described[:500]))  # type: ignore[attr-defined]
