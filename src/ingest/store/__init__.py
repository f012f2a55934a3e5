"""PostgreSQL: the connection, error translation, migrations, the bulk writer. The only module that writes SQL."""
