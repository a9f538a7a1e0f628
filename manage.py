#!/usr/bin/env python
"""Django's command-line utility for chatmodels."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    if sys.argv[1:2] == ["runserver"]:
        # runserver imports the application in a thread of a child process, where a failed
        # check ends the thread but not the process: check before that, and exit on one line.
        from project.serving import require_secret_key

        require_secret_key()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
