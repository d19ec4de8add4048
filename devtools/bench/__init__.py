"""`manage.py bench` (`make bench`): the engine measured in its distributed mode against
PostgreSQL and Redis, next to a raw-Celery baseline on the same broker and worker count.
See docs/performance.md for the method and the figures."""
