"""Threaded WSGI settings: the server model `make serve` was measured against.

`make serve` runs uvicorn (ASGI), which relays streams on an event loop;
bench/streaming_ttft.py compares the two (docs/performance.md). This stays
for that comparison, and for hosts that must run WSGI: streams work here too,
at a thread each (`pip install gunicorn`, then
`gunicorn -c playground/gunicorn.conf.py playground.wsgi`).
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# A streaming reply holds a thread for its whole length: 2 x 160 threads serve
# 256 concurrent streams with room to spare (bench/streaming_ttft.py).
threads = int(os.environ.get("GUNICORN_THREADS", "160"))
# gthread workers heartbeat from their main thread, so this bounds a stuck
# worker, not a long upstream call.
timeout = 180
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
