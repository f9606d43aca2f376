"""Creating and upgrading the store's schema with the Alembic migrations in `migrations/`."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATE_COMMAND = "python -m {{ cookiecutter.package_name }} migrate"


class SchemaError(RuntimeError):
    """The database is not at the schema this code needs."""


def alembic_config() -> Config:
    """Alembic's configuration for the store's migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The revision the code expects."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Bring the database of `engine` to the newest schema; returns (revision before, revision now)."""

    def run(connection: Connection) -> str | None:
        before = MigrationContext.configure(connection).get_current_revision()
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        return before

    async with engine.begin() as connection:
        before = await connection.run_sync(run)
    return before, head_revision()


async def check_schema(engine: AsyncEngine) -> None:
    """Raise `SchemaError` (one line, naming the command to run) unless the database is at the head revision."""
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # no "Context impl" lines
    async with engine.connect() as connection:
        current = await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
    head = head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = f"at revision {current}" if current else "empty"
        raise SchemaError(
            f"the notification store ({where}) is {state}, this code needs revision {head}: "
            f"run `{MIGRATE_COMMAND}` (make migrate)"
        )
