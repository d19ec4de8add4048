#!/bin/sh
# Entrypoint of the orchestrator image.
#
#   web | worker | beat | migrate [EXTRA ARGS...]   run that process (extra args are appended,
#                                                   e.g. `worker --concurrency 8`)
#   anything else                                   executed as given, e.g.
#                                                   `python manage.py createtenant acme`
#
# Every process is exec'ed so it receives the container's signals directly
# (SIGTERM = gunicorn graceful stop, Celery warm shutdown).
set -eu

if [ "$#" -eq 0 ]; then
    set -- web
fi

role="$1"
case "$role" in
    web)
        shift
        # Single-threaded processes, two per core by default (WEB_CONCURRENCY to change):
        # the API is CPU-bound Python, which threads of one process run one at a time.
        exec gunicorn orchestrator.wsgi:application \
            --bind 0.0.0.0:8000 --workers "${WEB_CONCURRENCY:-4}" --threads 1 "$@"
        ;;
    worker)
        shift
        exec celery -A orchestrator worker --loglevel INFO --concurrency 4 "$@"
        ;;
    beat)
        # Exactly one beat per deployment: a second one would schedule every run twice.
        shift
        exec celery -A orchestrator beat --loglevel INFO "$@"
        ;;
    migrate)
        shift
        exec python manage.py migrate --noinput "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
