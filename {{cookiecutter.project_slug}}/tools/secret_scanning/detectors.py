"""This project's detect-secrets rules: extra detectors and the filters that replace stock heuristics.

detect-secrets 1.5.0 loads this file twice through `.secrets.baseline` (see `update_baseline.py`):
the detector classes as plugins (`-p tools/secret_scanning/detectors.py`) and the functions
`is_harmless_value` and `is_digest` as filters. `docs/secret-scanning.md` explains each rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from pathlib import PurePath
from typing import Any

from detect_secrets.core.potential_secret import PotentialSecret
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.util.code_snippet import CodeSnippet

# The `secret_type` labels detect-secrets prints and stores in the baseline.
ASSIGNMENT_LABEL = "Credential Assignment"
MAILGUN_LABEL = "Mailgun API Key"
POSTMARK_LABEL = "Postmark Server Token"
GMAIL_LABEL = "Gmail App Password"
GITHUB_LABEL = "GitHub Access Token"
URL_LABEL = "URL Credentials"
_PRIVATE_KEY_LABEL = "Private Key"
_BASE64_LABEL = "Base64 High Entropy String"
# Values of any shape, where length, variety and spaces tell a credential from a word or a sentence.
# (Stock regex detectors may report only a token's prefix, so these rules must not touch them.)
_FREE_FORM_LABELS = frozenset({ASSIGNMENT_LABEL, URL_LABEL, POSTMARK_LABEL})

# In these files a credential is a string literal; an unquoted right-hand side is code.
CODE_SUFFIXES = frozenset(
    {".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".java", ".kt", ".rb", ".php", ".cs"}
)

_SECRET_WORDS = frozenset(
    {
        "password", "passwords", "passwd", "pwd", "pass", "passphrase", "secret", "secrets",
        "token", "tokens", "apikey", "apikeys", "credential", "credentials",
    }
)  # fmt: skip
# `key` alone names too many harmless things (`key: app.kubernetes.io/name`); these make it a credential.
_KEY_QUALIFIERS = frozenset(
    {
        "api", "access", "secret", "private", "auth", "app", "signing", "encryption", "master", "client",
        "server", "smtp", "mail", "webhook", "account", "service", "sendgrid", "mailgun", "postmark", "ses",
    }
)  # fmt: skip
_LOGIN_WORDS = frozenset({"user", "username", "login"})

_KEY_SPLIT = re.compile(r"[._\-\s]+|(?<=[a-z0-9])(?=[A-Z])")

# `key <op> `: env/ini/shell lines, YAML and JSON pairs, Python keyword arguments and annotated defaults
# (`mail_password: str = `). Quantifiers are bounded or possessive so long minified lines stay linear.
_KEY_OPERATOR = re.compile(
    r"""
    (?<![\w.])["']?(?P<key>[A-Za-z_][\w.-]{0,100}+)["']?\]?
    (?:\s*:\s*[A-Za-z_][\w\[\].,| ]{0,60}?)?
    \s*(?P<op>:=|\?=|=>|=|:)(?!=)\s*
    """,
    re.VERBOSE,
)
# The value after it: a string literal, possibly wrapped in SecretStr(...)/Field(default=...) or given as
# the default of os.getenv(...), or an unquoted word running to the end of the line, a comment or a quote.
_VALUE = re.compile(
    r"""
        (?:(?:SecretStr|SecretBytes|Secret|Field|str|bytes)\(\s*(?:default\s*=\s*)?
          |(?:os\.)?(?:environ\.get|getenv)\(\s*["'][^"']*["']\s*,\s*(?:default\s*=\s*)?)?
        [bBrRuU]{0,2}(?:"(?P<dq>[^"\\]*+(?:\\.[^"\\]*+)*+)"|'(?P<sq>[^'\\]*+(?:\\.[^'\\]*+)*+)')
      | (?P<bare>[^\s"'`]++)(?=$|\s+[#;]|["'`])
    """,
    re.VERBOSE,
)
# `USER, PASSWORD = "mailer", "..."`: names paired with the literals on the right.
_TUPLE_ASSIGNMENT = re.compile(
    r"^\s*(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)\s*=\s*(?P<values>[^=].*)$"
)
_STRING_LITERAL = re.compile(r""""[^"\\]*"|'[^'\\]*'""")
_LITERAL_SEPARATORS = re.compile(r"[\s,]*(?:#.*)?")
_BARE_OPERATORS = frozenset({"=", ":=", "?="})
# Unquoted right-hand sides that are references rather than values: dotted names, calls, subscripts,
# ENV_VAR_NAMES and snake_case_names.
_REFERENCE = re.compile(
    r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+"  # settings.mail_password
    r"|[A-Za-z_][\w.]*[(\[].*"  # get_password(), os.environ[...]
    r"|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # MAIL_PASSWORD
    r"|[a-z]+(?:_[a-z]+)+"  # mail_password
)

_UUID = re.compile(r"(?<![\w-])[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}(?![\w-])")
# On a line naming Postmark, what makes a UUID its token rather than, say, a message id.
_POSTMARK_CREDENTIAL = re.compile(r"token|key|secret|passw|credential|auth|postmark\w*\(", re.IGNORECASE)
_GMAIL = r"[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4}|[a-z]{16}"
_GMAIL_SHAPE = re.compile(_GMAIL)
# A whole value: after an opening quote or an assignment, up to a closing quote, a comment or the end.
_GMAIL_VALUE = re.compile(r"(?:[\"'`]|[=:]\s*)(?P<value>" + _GMAIL + r")(?=[\"'`]|\s+#|\s*$)")
_GMAIL_CONTEXT = re.compile(
    r"gmail|google|app[ _-]?pass|passw|pwd|login|secret|credential|smtp", re.IGNORECASE
)

# Userinfo may hold any sub-delimiter (RFC 3986: !$&'()*+,;=); `/`, `?`, `#` and `@` must be %-encoded.
_URL_CREDENTIALS = re.compile(
    r"(?i)\b[a-z][a-z0-9+.-]{0,30}+://[^\s:/?#@\"'`<>]*+:(?P<password>[^\s/?#@\"'`<>]++)@[\w\[]"
)
# A local development database's well-known login (PostgreSQL's `postgres`/`postgres`, any driver) on a
# loopback host: a developer's own machine, nothing to steal. The same login on any other host is a credential.
_LOCAL_DEFAULT_DATABASE = re.compile(
    r"(?i:postgres(?:ql)?(?:\+\w+)?)://postgres:postgres@(?i:localhost|127\.0\.0\.1|\[::1\])(?![\w.-])"
)

_PLACEHOLDER = re.compile(
    r"your[-_ .]|change[-_]?me|changeit|replace[-_]?me|placeholder|example|sample|dummy|fake|redacted"
    r"|xxxx|\*\*\*|\.\.\.",
    re.IGNORECASE,
)
# A value naming its own kind as a separate word, leetspeak included (`rotated-api-key-0123`,
# `Broker-Pa55word-never-shown`, `Pl41n-T3xt-Secret!`), describes a credential rather than being one:
# providers never issue such values. Checked on the lower-cased value with digits read as letters.
_SELF_DESCRIBING = re.compile(
    r"(?<![a-z0-9])(?:test|todo|api[-_]?key|password|passwd|secret|token)s?(?![a-z0-9])"
)
_LEET = str.maketrans("013457$@", "oieastsa")
# ${VAR}, $VAR, $(cmd), {name}, %(name)s, %NAME%, <your token>
_TEMPLATE = re.compile(r"^\$|\$[({]|\{[^}]*\}|%\([^)]*\)[sd]|^%\w+%$|^<.*>$")
_PLACEHOLDER_VALUES = frozenset({"undefined", "required", "optional", "notasecret"})
_DIGEST_CONTEXT = re.compile(
    r"sha\d*|md5|blake2|digest|hash|checksum|integrity|fingerprint|etag", re.IGNORECASE
)
_SRI = re.compile(r"^(?:sha256|sha384|sha512)-")
_MIN_LENGTH = 8
_MIN_DISTINCT = 5


def key_words(key: str) -> list[str]:
    """`MAIL_PASSWORD`, `mail.password`, `mailPassword` -> ["mail", "password"]."""
    return [word.lower() for word in _KEY_SPLIT.split(key) if word]


def is_credential_key(key: str) -> bool:
    """Whether a setting named `key` holds a credential: its last word says so (`MAIL_PASSWORD`, `apiKey`)."""
    words = key_words(key)
    if not words:
        return False
    if words[-1] in _SECRET_WORDS:
        return True
    return words[-1] in {"key", "keys"} and len(words) > 1 and words[-2] in _KEY_QUALIFIERS


def assignments(
    line: str, *, quotes_required: bool, keys: Callable[[str], bool] = is_credential_key
) -> Iterator[tuple[str, str]]:
    """(key, value) pairs assigned on `line` to keys accepted by `keys`.

    Unquoted values only count where they cannot be code (`quotes_required=False`) and after `=`.
    """
    tuple_match = _TUPLE_ASSIGNMENT.match(line)
    if tuple_match:
        names = re.split(r"\s*,\s*", tuple_match["names"])
        literals = _STRING_LITERAL.findall(tuple_match["values"])
        if len(literals) == len(names) and _LITERAL_SEPARATORS.fullmatch(
            _STRING_LITERAL.sub("", tuple_match["values"])
        ):
            yield from (
                (name, literal[1:-1]) for name, literal in zip(names, literals, strict=True) if keys(name)
            )
        return
    for key_match in _KEY_OPERATOR.finditer(line):
        if not keys(key_match["key"]):
            continue
        match = _VALUE.match(line, key_match.end())
        if match is None:
            continue
        quoted = match["dq"] if match["dq"] is not None else match["sq"]
        if quoted is not None:
            yield key_match["key"], quoted
            continue
        bare = match["bare"]
        if quotes_required or key_match["op"] not in _BARE_OPERATORS or _REFERENCE.fullmatch(bare):
            continue
        yield key_match["key"], bare


def is_code_file(filename: str) -> bool:
    """Source files, where credentials appear as string literals."""
    return PurePath(filename).suffix.lower() in CODE_SUFFIXES


class CredentialAssignmentDetector(RegexBasedDetector):
    """A value given to a credential-named key in any file: `.env`, ini, compose, YAML, JSON, Python.

    Replaces the stock KeywordDetector, which ignores unquoted values outside a few file types,
    annotated Python defaults and lines that also call a function.
    """

    secret_type = ASSIGNMENT_LABEL
    denylist = ()

    def analyze_line(
        self,
        filename: str,
        line: str,
        line_number: int = 0,
        context: CodeSnippet | None = None,
        **kwargs: Any,
    ) -> set[PotentialSecret]:
        """Scan `line`, requiring quotes around values in source files."""
        return super().analyze_line(
            filename=filename,
            line=line,
            line_number=line_number,
            context=context,  # type: ignore[arg-type]  # detect-secrets annotates it without None
            quotes_required=is_code_file(filename),
            **kwargs,
        )

    def analyze_string(self, string: str, quotes_required: bool = False) -> Generator[str, None, None]:
        """Values of credential-named keys."""
        for _, value in assignments(string, quotes_required=quotes_required):
            yield value


class MailgunKeyDetector(RegexBasedDetector):
    """Mailgun private API keys: `key-` and 32 characters, or the newer `<32 hex>-<8 hex>-<8 hex>`."""

    secret_type = MAILGUN_LABEL
    denylist = (
        re.compile(r"(?<![\w-])key-[0-9a-zA-Z]{32}(?![\w-])"),
        re.compile(r"(?<![\w-])[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}(?![\w-])"),
    )


class PostmarkServerTokenDetector(RegexBasedDetector):
    """Postmark server tokens (UUIDs): on a line naming Postmark and a credential, or as an SMTP user name.

    Stock detect-secrets drops every UUID; a UUID under a credential name is reported by
    CredentialAssignmentDetector.
    """

    secret_type = POSTMARK_LABEL
    denylist = ()

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        """UUIDs that are Postmark tokens by their context."""
        if "postmark" in string.lower() and _POSTMARK_CREDENTIAL.search(string):
            yield from _UUID.findall(string)
            return
        for _, value in assignments(string, quotes_required=False, keys=_is_login_key):
            if _UUID.fullmatch(value):
                yield value


class GmailAppPasswordDetector(RegexBasedDetector):
    """Google app passwords: 16 lower-case letters, usually shown as four groups of four."""

    secret_type = GMAIL_LABEL
    denylist = ()

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        """Whole values of that shape on a line about passwords, logins or Gmail."""
        if _GMAIL_CONTEXT.search(string):
            for match in _GMAIL_VALUE.finditer(string):
                yield match["value"]


class GitHubAccessTokenDetector(RegexBasedDetector):
    """GitHub tokens: classic (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) and fine-grained (`github_pat_`).

    Replaces the stock GitHubTokenDetector, which knows no fine-grained tokens and reports only the
    prefix (so every GitHub token had the same hash and one baseline entry allowed them all).
    """

    secret_type = GITHUB_LABEL
    denylist = (
        re.compile(r"(?<![A-Za-z0-9_])(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36}"),
        re.compile(r"(?<![A-Za-z0-9_])github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}"),
    )


class UrlCredentialsDetector(RegexBasedDetector):
    """The password in `scheme://user:password@host`, whatever sub-delimiters it holds.

    Replaces the stock BasicAuthDetector, which skips passwords containing any of `!*$&+,;=`.
    """

    secret_type = URL_LABEL
    denylist = (_URL_CREDENTIALS,)

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        """URL passwords, but not a local development database's default login on a loopback host."""
        for match in _URL_CREDENTIALS.finditer(string):
            if not _LOCAL_DEFAULT_DATABASE.match(string, match.start()):
                yield match["password"]


def is_harmless_value(secret: str, plugin: BasePlugin) -> bool:
    """Filter: placeholders, references, prose and trivial values a template ships on purpose.

    `your-sendgrid-api-key`, `change-me`, AWS's documented `...EXAMPLE` keys, `${MAIL_PASSWORD}`,
    `<token>`, `xxxx`, `abcd efgh ijkl mnop`; for free-form values also `Reset your password`, `dev`.
    Private keys are never harmless.
    """
    if plugin.secret_type == _PRIVATE_KEY_LABEL:
        return False
    value = secret.strip()
    if plugin.secret_type in _FREE_FORM_LABELS and _is_trivial(value):
        return True
    if _GMAIL_SHAPE.fullmatch(value) and _is_alphabet_run(value.replace(" ", "")):
        return True  # the documentation's `abcd efgh ijkl mnop`
    if _TEMPLATE.search(value) or _PLACEHOLDER.search(value):
        return True
    return bool(_SELF_DESCRIBING.search(value.lower().translate(_LEET)))


def is_digest(secret: str, line: str, plugin: BasePlugin) -> bool:
    """Filter: high-entropy strings that are digests (`sha384-...`, `expected_sha256 = "..."`)."""
    if plugin.secret_type != _BASE64_LABEL:
        return False
    if _SRI.match(secret):
        return True
    names_credential = next(assignments(line, quotes_required=True), None) is not None
    return bool(_DIGEST_CONTEXT.search(line)) and not names_credential


def _is_trivial(value: str) -> bool:
    if len(value) < _MIN_LENGTH or len(set(value.lower())) < _MIN_DISTINCT:
        return True
    if any(char.isspace() for char in value) and not _GMAIL_SHAPE.fullmatch(value):
        return True  # prose: real credentials carry no spaces (app passwords excepted)
    return value.lower() in _PLACEHOLDER_VALUES


def _is_login_key(key: str) -> bool:
    words = key_words(key)
    return bool(words) and words[-1] in _LOGIN_WORDS


def _is_alphabet_run(letters: str) -> bool:
    return letters in "abcdefghijklmnopqrstuvwxyz"
