#!/usr/bin/env python
import os
import sys

# Commands that only development runs: they may start without production settings
# (DEBUG is off unless set, and then SECRET_KEY is required). Everything a production
# server runs (migrate, collectstatic, check, shell, createsuperuser, invite) keeps
# the production default.
DEVELOPMENT_COMMANDS = {"makemigrations", "squashmigrations", "runserver", "test"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    if len(sys.argv) > 1 and sys.argv[1] in DEVELOPMENT_COMMANDS:
        os.environ.setdefault("DEBUG", "true")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
