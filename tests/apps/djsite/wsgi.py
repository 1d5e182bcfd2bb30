"""The site's WSGI application; importing it creates the tables (fresh database per test run)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")

import django  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

django.setup()
call_command("migrate", run_syncdb=True, verbosity=0)
application = get_wsgi_application()
