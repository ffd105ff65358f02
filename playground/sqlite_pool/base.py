"""Django's SQLite backend, with the connections requests close kept for the next ones.

Under ASGI every request runs in a thread of its own, so with Django's own
backend every request opens a connection: about 1 ms here (open the file, read
the schema, register Django's SQL functions, set the pragmas), the largest
single step before a streamed reply reaches the upstream (docs/performance.md).
Here a connection a request closes goes back to a pool for its database file,
and the next request's thread takes it. A connection is only ever used by one
thread at a time. SQLite connections are file handles, not server sessions, so
nothing limits how many are in use; only the idle ones are capped.
"""

import os
import threading
from sqlite3 import Connection

from django.db.backends.sqlite3 import base, creation

MAX_IDLE = 32  # per database file; a connection given back beyond that is closed


class _Pool:
    def __init__(self) -> None:
        self._idle: dict[str, list[Connection]] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> Connection | None:
        with self._lock:
            idle = self._idle.get(name)
            return idle.pop() if idle else None

    def give(self, name: str, connection: Connection) -> bool:
        with self._lock:
            idle = self._idle.setdefault(name, [])
            if len(idle) >= MAX_IDLE:
                return False
            idle.append(connection)
            return True

    def clear(self, name: str) -> None:
        with self._lock:
            idle = self._idle.pop(name, [])
        for connection in idle:
            connection.close()

    def forget(self) -> None:
        """In a forked child: SQLite forbids using a connection opened before the fork."""
        self._idle = {}
        self._lock = threading.Lock()


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.forget)


class DatabaseCreation(creation.DatabaseCreation):
    """A test database's file is deleted and made anew: no connection to the old file survives."""

    def _create_test_db(self, verbosity, autoclobber, keepdb=False):
        _pool.clear(self._get_test_db_name())
        return super()._create_test_db(verbosity, autoclobber, keepdb)

    def _destroy_test_db(self, test_database_name, verbosity):
        _pool.clear(test_database_name)
        super()._destroy_test_db(test_database_name, verbosity)


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation

    def get_new_connection(self, conn_params):
        return _pool.take(str(conn_params["database"])) or super().get_new_connection(conn_params)

    def _close(self):
        if self._reusable() and _pool.give(str(self.settings_dict["NAME"]), self.connection):
            return
        super()._close()

    def _reusable(self) -> bool:
        # A connection inside a transaction (it may hold the write lock) or after an
        # error is closed for real; an in-memory database is never shared.
        return not (
            self.connection is None
            or self.in_atomic_block
            or self.connection.in_transaction
            or self.errors_occurred
            or self.is_in_memory_db()
        )
