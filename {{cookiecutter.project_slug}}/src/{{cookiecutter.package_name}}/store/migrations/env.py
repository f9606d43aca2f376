"""Alembic environment: `store.schema.upgrade` passes the connection in `config.attributes`."""

from alembic import context

from {{ cookiecutter.package_name }}.store.models import Base

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
