import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration talks to a real PostgreSQL.
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.database)
