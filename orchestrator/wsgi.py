"""WSGI entry point for gunicorn (distributed mode)."""

from __future__ import annotations

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

from orchestrator import tracing

tracing.setup()  # before the middleware is loaded: the Django instrumentation adds its own
application = get_wsgi_application()

from django.urls import get_resolver  # noqa: E402  (needs settings)

from orchestrator.celery import require_real_broker  # noqa: E402  (needs settings)
from orchestrator.checks import require_secret_key  # noqa: E402  (needs settings)

require_real_broker()
require_secret_key()

# Import every URLconf, view and schema module now, in each gunicorn worker as it boots,
# rather than inside the first request it serves (about half a second, during which its
# other threads' requests wait).
get_resolver().url_patterns  # noqa: B018  (the property imports them)

# What is loaded now lives as long as the process: keep it out of the cyclic garbage
# collector's full passes, which would otherwise walk every module, model and URL pattern
# again and again, in the middle of requests (tens of milliseconds each on a busy machine).
gc.collect()  # what the imports left behind, so that it is not frozen too
gc.freeze()
