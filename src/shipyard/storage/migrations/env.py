"""Alembic environment: migrations run on a connection that shipyard passes in."""

from alembic import context

from shipyard.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run shipyard migrations through shipyard.storage.database.Database.upgrade")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
