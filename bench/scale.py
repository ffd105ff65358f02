"""Pages over large data: a 1,000-message conversation, and a list over 100,000 conversations.

    .venv/bin/python bench/scale.py [--database-url URL] [--write docs/performance.md]

Seeds a fresh database (a temporary SQLite file, or the PostgreSQL database given, which is
emptied first) with 100,000 conversations, 10,000 of them the viewer's, and one conversation
of 1,000 messages whose 500 replies each carry Markdown with code and the raw call behind it
(the request body holding the conversation so far, as a real one does). Then it times, in
process through Django's full stack (middleware, session, queries, templates), the pages a
user opens, against a baseline page measured in the same run: a conversation of 10 messages.
The conversation page opens at the latest 100 messages ("Show the whole conversation" renders
all of them, measured too), and only the last reply's raw call is in the page.

Targets (issue 7): the 1,000-message conversation in at most 150 ms; the conversation list
under 50 ms. Prints a table of p50/p95 per page and the query count.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONVERSATIONS = 100_000
VIEWER_CONVERSATIONS = 10_000
LONG_CONVERSATION_MESSAGES = 1_000
RUNS = 30
TARGETS_MS = {"1,000 messages": 150, "conversation list": 50}
REPLY = """Here is a way to do it, with the reasoning spelled out.

1. Read the input **once**, keeping only what the next step needs.
2. Build the index as a dictionary from key to position.
3. Answer each query from the index.

```python
def build_index(rows: list[dict]) -> dict[str, int]:
    index = {{}}
    for position, row in enumerate(rows):
        index[row["key"]] = position
    return index
```

| step | cost |
| --- | --- |
| read | O(n) |
| query | O(1) |

That is reply number {number}; ask if you want the version that streams.
"""


def configure(database_url: str | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="playground-scale-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="playground.settings",
        DEBUG="false",
        SECRET_KEY="scale-bench-" + "x" * 50,
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url or f"sqlite:///{workdir / 'scale.sqlite3'}",
        UPSTREAM_BASE_URL="http://127.0.0.1:9/v1",
        UPSTREAM_API_KEY="scale-bench",
    )
    import django

    django.setup()


def seed() -> dict:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from chat.models import ApiCall, Conversation, Message

    call_command("migrate", verbosity=0)
    call_command("flush", "--noinput", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # production static files
    users = [
        get_user_model().objects.create_user(f"user{n}", password="scale-password-1")
        for n in range(CONVERSATIONS // VIEWER_CONVERSATIONS)
    ]
    viewer = users[0]
    started = time.perf_counter()
    for user in users:
        Conversation.objects.bulk_create(
            (
                Conversation(owner=user, model="openai/gpt-4o", title=f"{user.username} chat {n}")
                for n in range(VIEWER_CONVERSATIONS)
            ),
            batch_size=2_000,
        )
    long = Conversation.objects.create(owner=viewer, model="demo/echo", title="Long one")
    short = Conversation.objects.create(owner=viewer, model="demo/echo", title="Short one")
    for conversation, count in ((long, LONG_CONVERSATION_MESSAGES), (short, 10)):
        parent, history = None, []
        for number in range(count // 2):
            question = f"Question {number}: how do I index {number} rows quickly?"
            user_message = Message.objects.create(
                conversation=conversation, parent=parent, role="user", content=question
            )
            reply = Message.objects.create(
                conversation=conversation,
                parent=user_message,
                role="assistant",
                content=REPLY.format(number=number),
            )
            history.append({"role": "user", "content": question})
            body = f'{{"model": "demo/echo", "messages": {history!r}}}'.replace("'", '"')
            history.append({"role": "assistant", "content": reply.content})
            ApiCall.objects.create(
                conversation=conversation,
                message=reply,
                status="succeeded",
                url="https://api.aimlapi.com/v1/chat/completions",
                request_body=body,
                http_status=200,
                response_body='{"choices": []}',
                latency_ms=900,
                prompt_tokens=20 * number,
                completion_tokens=180,
                total_tokens=20 * number + 180,
            )
            parent = reply
        conversation.current_leaf = parent
        conversation.save()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
    return {"viewer": viewer, "long": long, "short": short}


def time_page(client, url: str) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: template loading, connection
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    timings.sort()
    return {
        "p50": statistics.median(timings),
        "p95": timings[round(0.95 * len(timings)) - 1],
        "queries": len(queries),
        "kb": len(response.content) / 1024,
    }


def measure(data: dict) -> list[dict]:
    from django.db import connection
    from django.test import Client

    client = Client()
    client.force_login(data["viewer"])
    pages = [
        ("10 messages (baseline)", data["short"].get_absolute_url()),
        ("1,000 messages", data["long"].get_absolute_url()),
        ("1,000 messages, show all", data["long"].get_absolute_url() + "?all=1"),
        ("conversation list", "/conversations/"),
        ("conversation list, page 200", "/conversations/?page=200"),
    ]
    rows = []
    for label, url in pages:
        row = {"page": label, "database": connection.vendor, **time_page(client, url)}
        row["target"] = TARGETS_MS.get(label)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    target = f"≤ {row['target']} ms" if row["target"] else "—"
    met = "" if not row["target"] else (" ✓" if row["p95"] <= row["target"] else " ✗")
    return (
        f"| {row['page']} | {row['database']} | {row['p50']:.1f} | {row['p95']:.1f} | "
        f"{row['queries']} | {row['kb']:.0f} | {target}{met} |"
    )


def markdown_table(rows: list[dict]) -> str:
    head = (
        "| page | database | p50 (ms) | p95 (ms) | queries | size (KB) | target (p95) |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | --- |"
    )
    return "\n".join([head, *map(format_row, rows)])


def replace_section(path: Path, rows: list[dict]) -> None:
    """Write this run's rows, keeping the rows an earlier run wrote for another database."""
    begin, end = "<!-- scale:begin -->", "<!-- scale:end -->"
    text = path.read_text()
    before, rest = text.split(begin, 1)
    old, after = rest.split(end, 1)
    vendor = f" | {rows[0]['database']} | "
    kept = [
        line
        for line in old.splitlines()
        if line.startswith("| ")
        and vendor not in line
        and not line.startswith(("| page |", "| --- |"))
    ]
    table = "\n".join([markdown_table(rows), *kept])
    path.write_text(f"{before}{begin}\n{table}\n{end}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--write", type=Path, help="replace the table in this Markdown file")
    args = parser.parse_args()
    configure(args.database_url)
    rows = measure(seed())
    print()
    print(markdown_table(rows))
    if args.write:
        replace_section(args.write, rows)


if __name__ == "__main__":
    main()
