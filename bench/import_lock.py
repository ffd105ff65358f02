"""How long an import of a large file keeps other users' writes waiting (SQLite).

    .venv/bin/python bench/import_lock.py [--conversations 1000] [--exchanges 5]

Builds an export file (about 10 MB by default, MAX_IMPORT_BYTES), imports it with
the app's own service into a throwaway SQLite database, and meanwhile another
connection writes a row every 20 ms, as another user's send would. Prints the
file's size, the import's duration, and how long the other writes waited: the
longest wait is the longest time the import held SQLite's write lock.
"""

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--exchanges", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="import-lock-"))
    database = workdir / "bench.sqlite3"
    os.environ.update(
        {"DJANGO_SETTINGS_MODULE": "playground.settings", "DATABASE_URL": f"sqlite:///{database}"}
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from chat import exports
    from tests.helpers import large_export

    owner = get_user_model().objects.create_user("bench", password="bench-password-1")
    data = large_export(conversations=args.conversations, exchanges=args.exchanges)
    connection.close()

    other = sqlite3.connect(database, timeout=60, isolation_level=None)
    other.execute("CREATE TABLE other_writes (at REAL)")
    waits: list[float] = []
    done = threading.Event()

    def import_file() -> None:
        try:
            exports.conversations_import(owner=owner, data=data)
        finally:
            connection.close()
            done.set()

    started = time.perf_counter()
    worker = threading.Thread(target=import_file)
    worker.start()
    while not done.is_set():
        asked = time.perf_counter()
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO other_writes VALUES (?)", (asked,))
        other.execute("COMMIT")
        waits.append(time.perf_counter() - asked)
        time.sleep(0.02)
    worker.join()
    duration = time.perf_counter() - started
    print(
        f"file: {len(data) / 2**20:.1f} MiB, {args.conversations} conversations "
        f"x {2 * args.exchanges} messages"
    )
    print(f"import: {duration:.2f} s")
    print(
        f"other writes: {len(waits)}, median wait {statistics.median(waits) * 1000:.1f} ms, "
        f"longest wait {max(waits) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
