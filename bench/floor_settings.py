"""The app's settings with `bench.floor_urls` as the only URLs (streaming_ttft.py --floors)."""

from playground.settings import *  # noqa: F403 - the app's settings, one line changed

ROOT_URLCONF = "bench.floor_urls"
