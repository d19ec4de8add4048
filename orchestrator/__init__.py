"""The project and the platform core. The Celery app is orchestrator.celery (`celery -A
orchestrator` finds it there); the app config loads it when Django starts."""
