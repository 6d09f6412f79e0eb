"""Persistent state: the schema, migrations and the queries over them."""
