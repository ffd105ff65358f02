"""A compare run takes about as long as its slowest column, not the sum of them.

    .venv/bin/python bench/compare_concurrency.py [--rounds 3] [--write docs/performance.md]

Starts the demo upstream in this process with a realistic first-token delay, and
gives each column its own extra latency through the demo's ``delay`` fault (set
in the column's extra parameters, so every column is as slow as a different
model). For 2, 3 and 4 columns it times, with the app's own services and a
throwaway SQLite database, in the same run:

* sequential: the columns' replies generated one after another (the baseline a
  naive loop would give: the sum);
* concurrent: ``compare_send``, the form path's compare run (calls in threads).

and prints the medians, with each column's time alone for reference.
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_TOKEN_DELAY = 0.3  # seconds; the demo upstream's wait before any reply
COLUMN_DELAYS = [0.2, 0.5, 0.8, 1.1]  # extra seconds per column, as different models differ
BEGIN, END = "<!-- compare-concurrency:begin -->", "<!-- compare-concurrency:end -->"


def set_up_django(workdir: Path, base_url: str) -> None:
    for name in [key for key in os.environ if key.startswith(("UPSTREAM_", "DJANGO_"))]:
        del os.environ[name]
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "playground.settings",
            "DEBUG": "true",  # in-process, as it was measured; DEBUG is off unless set
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "UPSTREAM_BASE_URL": base_url,
            "UPSTREAM_API_KEY": "bench-key",
            "UPSTREAM_MAX_RETRIES": "0",
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def column(delay: float) -> dict:
    return {
        "model": "demo/echo",
        "system_prompt": "",
        "temperature": None,
        "top_p": None,
        "max_tokens": None,
        "stop": [],
        "extra_params": {"demo_fault": f"delay={delay}"},
    }


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(columns: int, rounds: int, conversation) -> dict:
    from chat import compare, generation
    from chat.models import Message

    parameter_sets = [column(delay) for delay in COLUMN_DELAYS[:columns]]
    sequential, concurrent = [], []
    for number in range(rounds):

        def start(kind: str, number: int = number):
            run, _ = compare.compare_start(
                conversation=conversation,
                content=f"Compare {columns} columns, round {number}",
                idempotency_key=f"{kind}-{columns}-{number}",
                parameter_sets=parameter_sets,
                claim=True,
            )
            return run

        run = start("sequential")
        pending = list(Message.objects.filter(compare_column__run=run))
        sequential.append(
            timed(
                lambda pending=pending: [generation.replies_generate(replies=[r]) for r in pending]
            )
        )
        concurrent.append(
            timed(
                lambda number=number: compare.compare_send(
                    conversation=conversation,
                    content=f"Compare {columns} columns, round {number}",
                    idempotency_key=f"concurrent-{columns}-{number}",
                    parameter_sets=parameter_sets,
                )
            )
        )
    stored = Message.objects.filter(compare_column__isnull=False, status="complete").count()
    slowest_alone = FIRST_TOKEN_DELAY + COLUMN_DELAYS[columns - 1]
    return {
        "columns": columns,
        "slowest": slowest_alone,
        "sequential": statistics.median(sequential),
        "concurrent": statistics.median(concurrent),
        "stored": stored,
    }


def alone(rounds: int, conversation) -> list[float]:
    """Each column's time on its own (the floor a concurrent run can reach)."""
    from chat import compare, generation
    from chat.models import Message

    times = []
    for delay in COLUMN_DELAYS:
        samples = []
        for number in range(rounds):
            run, _ = compare.compare_start(
                conversation=conversation,
                content="alone",
                idempotency_key=f"alone-{delay}-{number}",
                parameter_sets=[column(delay), column(delay)],
                claim=True,
            )
            reply = Message.objects.filter(compare_column__run=run).first()
            samples.append(timed(lambda reply=reply: generation.replies_generate(replies=[reply])))
        times.append(statistics.median(samples))
    return times


def table(rows: list[dict], alone_times: list[float], rounds: int) -> str:
    lines = [
        "| columns | each column alone (s) | sequential, sum (s) | compare run (s) "
        "| run / slowest alone | run / sequential |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        each = ", ".join(f"{value:.2f}" for value in alone_times[: row["columns"]])
        slowest = max(alone_times[: row["columns"]])
        lines.append(
            f"| {row['columns']} | {each} | {row['sequential']:.2f} | {row['concurrent']:.2f} "
            f"| {row['concurrent'] / slowest:.2f}× | {row['concurrent'] / row['sequential']:.2f}× |"
        )
    lines.append("")
    lines.append(
        f"Medians of {rounds} rounds. First-token delay {FIRST_TOKEN_DELAY} s, column delays "
        f"{', '.join(str(d) for d in COLUMN_DELAYS)} s (the demo's `delay` fault)."
    )
    return "\n".join(lines)


def write_into(path: Path, text: str) -> None:
    document = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(document):
        raise SystemExit(f"{path} has no {BEGIN} … {END} section to write into")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", document))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="put the table into this Markdown file")
    options = parser.parse_args()

    from chat.demo_upstream import DemoUpstream

    with (
        tempfile.TemporaryDirectory() as workdir,
        DemoUpstream(first_token_delay=FIRST_TOKEN_DELAY) as upstream,
    ):
        set_up_django(Path(workdir), upstream.base_url)
        from django.contrib.auth import get_user_model

        from chat.models import Conversation

        user = get_user_model().objects.create_user("bench", password="bench-password-1")
        conversation = Conversation.objects.create(owner=user, model="demo/echo")
        alone_times = alone(options.rounds, conversation)
        rows = [measure(columns, options.rounds, conversation) for columns in (2, 3, 4)]
        text = table(rows, alone_times, options.rounds)
    print(text)
    if options.write:
        write_into(options.write, text)
        print(f"\nWritten into {options.write}")


if __name__ == "__main__":
    main()
