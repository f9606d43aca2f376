"""Seeded random fake credentials, each planted in a realistic file, and harmless look-alikes.

`planted(seed, package)` gives one file per credential kind the generated project's hooks must block;
`lookalikes(seed, package)` gives files a project ships on purpose that they must let through. Every
value comes from `random.Random(seed)`, so a failure reproduces with the seed in its message.
Nothing here is a real credential; PEM markers are assembled at run time so that this file itself
passes the template repository's private-key hook.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import textwrap
import uuid
from dataclasses import dataclass

UPPER_DIGITS = string.ascii_uppercase + string.digits
LOWER_DIGITS = string.ascii_lowercase + string.digits
BASE62 = string.ascii_letters + string.digits
BASE64 = BASE62 + "+/"
# Printable punctuation a password manager uses, minus quotes, backslash, backtick and space. `%` is
# in on purpose: stock detect-secrets gives up on env values containing it.
PASSWORD_PUNCTUATION = "!%&*+,-.;=?@^_~$"
# What may stand unencoded in a URL's userinfo (RFC 3986 sub-delimiters without quotes and brackets).
URL_PUNCTUATION = "!*$&+,;=-._~"


@dataclass(frozen=True)
class Plant:
    """A file to add to the project: `content` at repo-relative `path`, holding `secrets` (if any)."""

    kind: str
    path: str
    content: str
    secrets: tuple[str, ...] = ()


class Fakes:
    """Random credentials in the shapes providers issue them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chars(self, alphabet: str, length: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(length))

    def password(self, length: int = 20, punctuation: str = PASSWORD_PUNCTUATION) -> str:
        """Upper, lower, digits and at least three punctuation marks, starting with a letter."""
        body = [
            *self.chars(string.ascii_uppercase, 3),
            *self.chars(string.ascii_lowercase, 5),
            *self.chars(string.digits, 3),
            *self.chars(punctuation, 3),
            *self.chars(BASE62 + punctuation, length - 15),
        ]
        self.rng.shuffle(body)
        return self.chars(string.ascii_letters, 1) + "".join(body)

    def percent_password(self) -> str:
        """A password holding `%`, as URL-encoded copies often do (`%40` for `@`)."""
        password = self.password(18)
        cut = self.rng.randrange(4, 14)
        return password[:cut] + "%" + self.chars("0123456789ABCDEF", 2) + password[cut:]

    def url_password(self) -> str:
        """A password with several of `!*$&+,;=`, which the stock basic-auth detector refuses."""
        return self.password(22, punctuation="!*$&+,;=") + self.rng.choice("!*&+,;=")

    def sendgrid(self) -> str:
        return f"SG.{self.chars(BASE62 + '-_', 22)}.{self.chars(BASE62 + '-_', 43)}"

    def aws_key_id(self) -> str:
        return "AKIA" + self.chars(UPPER_DIGITS, 16)

    def aws_secret_key(self) -> str:
        return self.chars(BASE64, 40)

    def ses_smtp_password(self) -> str:
        """SES SMTP passwords: 44 base64 characters, version byte 0x04 (so they start with `B`)."""
        return base64.b64encode(bytes([4]) + self.rng.randbytes(32)).decode()

    def postmark(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def mailgun_legacy(self) -> str:
        return "key-" + self.chars(LOWER_DIGITS, 32)

    def mailgun(self) -> str:
        hexdigits = "0123456789abcdef"
        return f"{self.chars(hexdigits, 32)}-{self.chars(hexdigits, 8)}-{self.chars(hexdigits, 8)}"

    def gmail_app_password(self, spaced: bool = True) -> str:
        groups = [self.chars(string.ascii_lowercase, 4) for _ in range(4)]
        return " ".join(groups) if spaced else "".join(groups)

    def github_token(self) -> str:
        return "ghp_" + self.chars(BASE62, 36)

    def github_fine_grained_token(self) -> str:
        return f"github_pat_{self.chars(BASE62, 22)}_{self.chars(BASE62, 59)}"

    def slack_webhook(self) -> str:
        return (
            f"https://hooks.slack.com/services/T{self.chars(UPPER_DIGITS, 10)}"
            f"/B{self.chars(UPPER_DIGITS, 10)}/{self.chars(BASE62, 24)}"
        )

    def api_key(self) -> str:
        """What `secrets.token_urlsafe(32)` prints."""
        return self.chars(BASE62 + "-_", 43)

    def pem(self, label: str) -> str:
        """A PEM block `label` ("RSA PRIVATE KEY", "CERTIFICATE", ...) around random DER-sized bytes."""
        body = base64.b64encode(self.rng.randbytes(self.rng.randrange(120, 400))).decode()
        dashes = "-" * 5
        lines = [
            f"{dashes}{'BEGIN'} {label}{dashes}",
            *textwrap.wrap(body, 64),
            f"{dashes}END {label}{dashes}",
        ]
        return "\n".join(lines) + "\n"

    def hexdigest(self, algorithm: str) -> str:
        return hashlib.new(algorithm, self.rng.randbytes(64)).hexdigest()


def _env_file(**values: str) -> str:
    settings = {
        "MAIL_SERVER": "smtp.sendgrid.net",
        "MAIL_PORT": "587",
        "MAIL_STARTTLS": "true",
        "MAIL_SSL_TLS": "false",
        "MAIL_USERNAME": "apikey",
        "MAIL_FROM": "noreply@example.com",
        **values,
    }
    return "# Mail settings\n" + "".join(f"{key}={value}\n" for key, value in settings.items())


def _compose(environment: str) -> str:
    return (
        "services:\n  api:\n    build: .\n    environment:\n"
        + textwrap.indent(environment, "      ")
        + '    ports:\n      - "127.0.0.1:8000:8000"\n'
    )


def planted(seed: int, package: str) -> list[Plant]:
    """One file per credential kind, each with fresh random values."""
    fake = Fakes(seed)
    plants: list[Plant] = []

    def plant(kind: str, path: str, content: str, *secrets: str) -> None:
        plants.append(Plant(kind, path, content, secrets))

    # Real env files: blocked by name whatever they hold.
    for path in (".env", ".env.production", "deploy/mail.env", ".envrc", ".envs/.production/.mail"):
        password = fake.password()
        line = f"export MAIL_PASSWORD='{password}'" if path == ".envrc" else f"MAIL_PASSWORD={password}"
        plant(f"env file {path}", path, line + "\n", password)

    # .env.example passes the name check, so its values are scanned.
    password = fake.password()
    plant("env: unquoted password", ".env.example", _env_file(MAIL_PASSWORD=password), password)
    password = fake.percent_password()
    plant("env: password with %", ".env.example", _env_file(MAIL_PASSWORD=password), password)
    password = fake.password()
    plant("env: quoted password", ".env.example", _env_file(MAIL_PASSWORD=f'"{password}"'), password)
    key = fake.sendgrid()
    plant("env: SendGrid API key", ".env.example", _env_file(MAIL_PASSWORD=key), key)
    token = fake.postmark()
    plant(
        "env: Postmark server token as user and password",
        ".env.example",
        _env_file(MAIL_SERVER="smtp.postmarkapp.com", MAIL_USERNAME=token, MAIL_PASSWORD=token),
        token,
    )
    token = fake.postmark()
    plant(
        "env: Postmark server token as user name only",
        ".env.example",
        _env_file(MAIL_SERVER="smtp.postmarkapp.com", MAIL_USERNAME=token, MAIL_PASSWORD="${POSTMARK_TOKEN}"),
        token,
    )
    key = fake.mailgun()
    plant("env: Mailgun key (new form)", ".env.example", _env_file(MAILGUN_API_KEY=key), key)
    secret = f"{fake.chars(BASE62, 3)}8Q~{fake.chars(BASE62 + '~._-', 34)}"  # a Microsoft Entra client secret
    plant("env: OAuth2 client secret", ".env.example", _env_file(MAIL_OAUTH_CLIENT_SECRET=secret), secret)
    token = f"1//0{fake.chars(BASE62 + '-_', 98)}"  # a Google refresh token
    plant("env: OAuth2 refresh token", ".env.example", _env_file(MAIL_OAUTH_REFRESH_TOKEN=token), token)
    app_password = fake.gmail_app_password()
    plant(
        "env: Gmail app password (4x4)",
        ".env.example",
        _env_file(MAIL_SERVER="smtp.gmail.com", MAIL_PASSWORD=f'"{app_password}"'),
        app_password,
    )
    key_id, secret_key = fake.aws_key_id(), fake.aws_secret_key()
    plant(
        "env: AWS access key",
        ".env.example",
        _env_file(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret_key),
        key_id,
        secret_key,
    )
    user, password = fake.aws_key_id(), fake.ses_smtp_password()
    plant(
        "env: SES SMTP credentials",
        ".env.example",
        _env_file(
            MAIL_SERVER="email-smtp.eu-west-1.amazonaws.com", MAIL_USERNAME=user, MAIL_PASSWORD=password
        ),
        user,
        password,
    )
    password = fake.url_password()
    url = f"smtp://mailer:{password}@smtp.example.com:587"
    plant("env: smtp:// URL with !*$&+,;= password", ".env.example", _env_file(MAIL_URL=url), password)
    webhook = fake.slack_webhook()
    plant("env: Slack webhook", ".env.example", _env_file(SLACK_WEBHOOK_URL=webhook), webhook)
    host = f"db-{fake.chars(LOWER_DIGITS, 6)}.{fake.rng.choice(['internal', 'prod.local', 'eu-west-1.rds.amazonaws.com'])}"
    url = f"postgresql+asyncpg://postgres:postgres@{host}:5432/notifications"
    plant(
        "env: a local database's default login on another host",
        ".env.example",
        _env_file(DATABASE_URL=url),
        "postgres:postgres@" + host,
    )
    password = fake.url_password()
    host = fake.rng.choice(["localhost", "127.0.0.1", "[::1]"])
    plant(
        "env: another password for a database on localhost",
        ".env.example",
        _env_file(DATABASE_URL=f"postgresql://postgres:{password}@{host}:5432/app"),
        password,
    )
    key = fake.api_key()
    plant("env: the service's API key", ".env.example", _env_file(API_KEYS=key), key)

    # docker compose: list items are dropped by detect-secrets' YAML parser.
    password = fake.password()
    plant(
        "compose: environment list password",
        "compose.override.yaml",
        _compose(f"- MAIL_SERVER=smtp.mailgun.org\n- MAIL_PASSWORD={password}\n"),
        password,
    )
    key = fake.sendgrid()
    plant(
        "compose: environment list SendGrid key",
        "docker-compose.yml",
        _compose(f'- "SENDGRID_API_KEY={key}"\n'),
        key,
    )
    key_id = fake.aws_key_id()
    plant(
        "compose: environment list SES user",
        "docker-compose.prod.yml",
        _compose(f"- MAIL_USERNAME={key_id}\n- MAIL_PASSWORD=${{SES_SMTP_PASSWORD}}\n"),
        key_id,
    )
    token = fake.postmark()
    plant(
        "compose: environment list Postmark token",
        "compose.yaml",
        _compose(f"- MAIL_SERVER=smtp.postmarkapp.com\n- MAIL_USERNAME={token}\n"),
        token,
    )
    password = fake.password()
    plant(
        "compose: environment mapping",
        "compose.override.yaml",
        _compose(f"MAIL_PASSWORD: {password}\n"),
        password,
    )
    password = fake.password()
    plant(
        "k8s: container argument",
        "deploy/worker.yaml",
        f'spec:\n  containers:\n    - name: worker\n      args:\n        - "--smtp-password={password}"\n',
        password,
    )
    app_password = fake.gmail_app_password(spaced=False)
    plant(
        "k8s: Secret stringData with a Gmail app password",
        "deploy/mail-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: mail\n"
        f"stringData:\n  MAIL_PASSWORD: {app_password}\n",
        app_password,
    )

    # Python source.
    module = f"src/{package}/provider_defaults.py"
    password = fake.password()
    plant(
        "python: annotated settings default",
        module,
        "from pydantic_settings import BaseSettings\n\n\nclass Defaults(BaseSettings):\n"
        f'    mail_server: str = "smtp.office365.com"\n    mail_password: str = "{password}"\n',
        password,
    )
    password = fake.password()
    plant(
        "python: SecretStr default",
        module,
        f'from pydantic import SecretStr\n\nMAIL_PASSWORD: SecretStr = SecretStr("{password}")\n',
        password,
    )
    password = fake.password()
    plant(
        "python: os.getenv default",
        module,
        f'import os\n\nMAIL_PASSWORD = os.getenv("MAIL_PASSWORD", "{password}")\n',
        password,
    )
    key = fake.sendgrid()
    plant(
        "python: SendGrid key passed to a call",
        module,
        f'from sendgrid import SendGridAPIClient\n\nclient = SendGridAPIClient("{key}")\n',
        key,
    )
    key_id, secret_key = fake.aws_key_id(), fake.aws_secret_key()
    plant(
        "python: AWS keys passed to a call",
        module,
        "import boto3\n\n"
        f'ses = boto3.client("ses", aws_access_key_id="{key_id}", aws_secret_access_key="{secret_key}")\n',
        key_id,
        secret_key,
    )
    key = fake.mailgun_legacy()
    plant(
        "python: Mailgun key (key-...) passed to a call",
        module,
        "import requests\n\n"
        f'response = requests.post(URL, auth=("api", "{key}"), data=message, timeout=10)\n',
        key,
    )
    key = fake.mailgun()
    plant(
        "python: Mailgun key (new form) passed to a call",
        module,
        f'mailgun = Mailgun("mg.example.com", "{key}")\n',
        key,
    )
    token = fake.postmark()
    plant(
        "python: Postmark token in a header",
        module,
        f'HEADERS = {{"Accept": "application/json", "X-Postmark-Server-Token": "{token}"}}\n',
        token,
    )
    app_password = fake.gmail_app_password()
    plant(
        "python: Gmail app password passed to login()",
        module,
        f'smtp.login("alerts@gmail.com", "{app_password}")\n',
        app_password,
    )
    password = fake.url_password()
    plant(
        "python: smtps:// URL constant",
        module,
        f'MAIL_URL = "smtps://ops%40example.com:{password}@smtp.example.com:465"\n',
        password,
    )
    token = fake.github_token()
    plant("python: GitHub token", module, f'gh = Github("{token}")\n', token)
    token = fake.github_fine_grained_token()
    plant(
        "python: GitHub fine-grained token",
        module,
        f'headers = {{"Authorization": "Bearer {token}"}}\n',
        token,
    )
    webhook = fake.slack_webhook()
    plant(
        "python: Slack webhook passed to a call",
        module,
        f'requests.post("{webhook}", json={{"text": "mail queue stalled"}}, timeout=5)\n',
        webhook,
    )

    # Other configuration files.
    password = fake.percent_password()
    plant(
        "ini: password with %",
        "config/mail.ini",
        f"[smtp]\nhost = smtp.example.net\npassword = {password}\n",
        password,
    )
    password = fake.url_password()
    plant(
        "toml: smtp:// URL",
        "config/settings.toml",
        f'[mail]\nurl = "smtp://relay:{password}@relay.example.net:587"\ntimeout = 10\n',
        password,
    )
    password = fake.password()
    plant(
        "json: nested password",
        "config/mail.json",
        f'{{\n  "smtp": {{\n    "host": "smtp.example.net",\n    "password": "{password}"\n  }}\n}}\n',
        password,
    )
    password = fake.password()
    plant("Dockerfile: ENV", "Dockerfile", f"FROM python:3.11-slim\nENV MAIL_PASSWORD={password}\n", password)
    token = fake.github_token()
    plant(
        "shell: exported GitHub token",
        "scripts/release.sh",
        f"#!/bin/sh\nexport GITHUB_TOKEN={token}\ngh release create v1.0.0\n",
        token,
    )
    token = fake.github_token()
    plant(
        "GitHub workflow: token in env",
        ".github/workflows/release.yml",
        f"on: push\njobs:\n  release:\n    runs-on: ubuntu-latest\n    env:\n      GH_TOKEN: {token}\n",
        token,
    )

    # Private keys.
    plant("PEM: RSA private key", "deploy/dkim.key", fake.pem("RSA PRIVATE KEY"))
    plant("PEM: PKCS#8 private key", "certs/smtp.pem", fake.pem("PRIVATE KEY"))
    plant("PEM: EC private key", "certs/client-ec.pem", fake.pem("EC PRIVATE KEY"))
    plant("PEM: OpenSSH private key", "deploy/id_ed25519", fake.pem("OPENSSH PRIVATE KEY"))
    plant(
        "PEM: private key in a Python string",
        module,
        'DKIM_PRIVATE_KEY = """\n' + fake.pem("PRIVATE KEY") + '"""\n',
    )
    return plants


def lookalikes(seed: int, package: str) -> list[Plant]:
    """Files shaped like the ones above that hold no credential."""
    fake = Fakes(seed)
    uuid_value, sha256, sha1, md5 = (
        fake.postmark(),
        fake.hexdigest("sha256"),
        fake.hexdigest("sha1"),
        fake.hexdigest("md5"),
    )
    sri = "sha384-" + base64.b64encode(fake.rng.randbytes(48)).decode()
    return [
        Plant(
            "placeholders in an env template",
            "deploy/.env.example",
            "MAIL_SERVER=smtp.sendgrid.net\nMAIL_USERNAME=apikey\nMAIL_PASSWORD=your-sendgrid-api-key\n"
            "API_KEYS=change-me\nPOSTMARK_SERVER_TOKEN=your-postmark-server-token\n"
            "MAILGUN_API_KEY=key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nMAIL_PASSWORD=<your-app-password>\n"
            "SMTP_PASSWORD=${MAIL_PASSWORD}\nGMAIL_APP_PASSWORD=xxxx xxxx xxxx xxxx\nMAIL_PASSWORD=\n"
            "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\n"
            "POSTMARK_SERVER_TOKEN=00000000-0000-0000-0000-000000000000\nMAIL_PASSWORD=dev\n",
        ),
        Plant(
            "OAuth2 placeholders in an env template",
            "deploy/oauth.env.example",
            "MAIL_AUTH=xoauth2\nMAIL_OAUTH_PROVIDER=microsoft\nMAIL_OAUTH_TENANT_ID=your-tenant-id\n"
            "MAIL_OAUTH_CLIENT_ID=your-application-client-id\nMAIL_OAUTH_CLIENT_SECRET=your-client-secret-value\n"
            "MAIL_OAUTH_REFRESH_TOKEN=your-refresh-token\nMAIL_OAUTH_REFRESH_TOKEN=\n"
            "MAIL_OAUTH_TOKEN_URL=https://login.microsoftonline.com/your-tenant-id/oauth2/v2.0/token\n"
            "MAIL_OAUTH_SCOPE=https://outlook.office365.com/.default\n"
            "MAIL_OAUTH_SERVICE_ACCOUNT_FILE=secrets/service-account.json\n",
        ),
        Plant(
            "AWS's documented example keys",
            "docs/ses.md",
            "# SES\n\n```sh\nexport AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
            "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n```\n\n"
            '```python\nses = boto3.client("ses", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",\n'
            '                   aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")\n```\n',
        ),
        Plant(
            "test digests and ids",
            "tests/test_fixtures_digest.py",
            "import hashlib\n\n"
            f'EXPECTED_SHA256 = "{sha256}"\nCOMMIT = "{sha1}"\nETAG = "{md5}"\nINTEGRITY = "{sri}"\n'
            f'NOTIFICATION_ID = "{uuid_value}"\nPOSTMARK_MESSAGE_ID = "{uuid_value}"\n\n\n'
            "def test_digest() -> None:\n"
            f'    assert hashlib.sha1(b"body").hexdigest() != "{sha1}"\n',
        ),
        Plant(
            "sentences about passwords and tokens",
            f"src/{package}/messages.py",
            'PASSWORD_RESET_SUBJECT = "Reset your password"\n'
            'TOKEN_EXPIRED = "Your sign-in token has expired; request a new one"\n'
            'MAIL_PASSWORD_HELP = "Use a 16-letter app password, not your account password"\n'
            'password_label = "Password"\nSECRET_NAME = "mail-credentials"\nMIN_PASSWORD_LENGTH = 12\n'
            'API_KEY_HEADER = "Authorization"\nDEV_PASSWORD = "dev"\n',
        ),
        Plant(
            "references instead of values",
            f"src/{package}/wiring.py",
            "import os\nimport secrets\n\nfrom pydantic import SecretStr\n\n"
            'password = os.environ["MAIL_PASSWORD"]\nmail_password: SecretStr = SecretStr("")\n'
            "api_key = settings.api_key.get_secret_value()\ntoken = secrets.token_urlsafe(32)\n"
            'MAIL_PASSWORD_ENV = "MAIL_PASSWORD"\nconfig = {"MAIL_PASSWORD": password, "api_key": api_key}\n'
            'client = SendGridAPIClient(os.environ["SENDGRID_API_KEY"])\n',
        ),
        Plant(
            "compose environment references",
            "compose.override.yaml",
            _compose(
                "- MAIL_PASSWORD=${MAIL_PASSWORD}\n- MAIL_USERNAME\n"
                "- SENDGRID_API_KEY=${SENDGRID_API_KEY:?set it}\n- MAIL_SERVER=smtp.sendgrid.net\n- CELERY_BROKER_URL=redis://redis:6379/0\n"
                f"- NOTIFICATION_NAMESPACE={uuid_value}\n"
            ),
        ),
        Plant(
            "a local development database's default login on loopback",
            "deploy/dev.env.example",
            "DATABASE_URL=postgresql://postgres:postgres@localhost:5432/db\n"
            "TEST_DATABASE_URL=postgresql+asyncpg://postgres:postgres@127.0.0.1/test\n"
            "REPORTING_URL=postgresql+psycopg2://postgres:postgres@[::1]:5432/reports\n"
            "LEGACY_DATABASE_URL=postgres://postgres:postgres@LOCALHOST/legacy\n",
        ),
        Plant(
            "URLs without real credentials",
            "config/urls.toml",
            '[mail]\nlocal = "smtp://localhost:1025"\nrelay = "smtps://mailer:${SMTP_PASSWORD}@smtp.example.com:465"\n'
            'broker = "redis://redis:6379/0"\ndatabase = "postgresql://app:change-me@db:5432/app"\n'
            'format = "smtp://{user}:{password}@{host}:{port}"\n',
        ),
        Plant("a certificate", "certs/ca.pem", fake.pem("CERTIFICATE")),
        Plant("a public key", "certs/dkim.pub", fake.pem("PUBLIC KEY")),
        Plant(
            "documentation",
            "docs/providers.md",
            "# Gmail\n\nGoogle shows the app password as four groups, like `abcd efgh ijkl mnop`;\n"
            "set `MAIL_PASSWORD=...` in `.env`. In code, pass `password=settings.mail_password`.\n\n"
            "| variable | meaning |\n|---|---|\n| MAIL_PASSWORD | the SMTP password (never logged) |\n",
        ),
        Plant(
            "workflow using repository secrets",
            ".github/workflows/deploy.yml",
            "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    env:\n"
            "      GH_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n      MAIL_PASSWORD: ${{ secrets.MAIL_PASSWORD }}\n"
            "    steps:\n      - run: echo deploying\n",
        ),
        Plant(
            "Makefile reading a secret at run time",
            "deploy/Makefile",
            "MAIL_PASSWORD ?= $(shell cat .secrets/mail-password)\n"
            "deploy:\n\tMAIL_PASSWORD=$(MAIL_PASSWORD) ./deploy.sh\n",
        ),
    ]
