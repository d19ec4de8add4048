"""What a task raises (python) or exits with (shell) to end itself `skipped`."""

SKIP_EXIT_CODE = 99


class SkipTask(Exception):
    """Raise from a python task to end it `skipped` instead of `success`."""
