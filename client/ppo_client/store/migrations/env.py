"""Alembic's entry point for the store's migrations: always run on the connection the store hands
over (``config.attributes["connection"]``), inside the store's own write transaction."""

from alembic import context

from ppo_client.store.schema import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
