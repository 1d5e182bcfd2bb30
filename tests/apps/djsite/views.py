"""``/visit/<n>?http=<s>&db=<s>``: write a row, wait on I/O (an outbound HTTP call that takes
``http`` seconds, a database sleep of ``db`` seconds on PostgreSQL), read the row back and render
it with a template.  Every part of the answer depends on ``n``, so a mixed-up answer shows."""
import urllib.request

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.shortcuts import render

from djsite.models import Visit


def visit(request, number):
    label = request.GET.get("label", "")
    row = Visit.objects.create(label=label, number=number)
    http_wait = request.GET.get("http")
    echo = ""
    if http_wait:
        url = "%s/echo/%d?delay=%s" % (settings.SLOW_URL, number, http_wait)
        with urllib.request.urlopen(url, timeout=30) as response:
            echo = response.read().decode()
    db_wait = request.GET.get("db")
    if db_wait:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s), %s", [float(db_wait), number])
            (_, db_echo), = cursor.fetchall()
        echo += "/db%d" % db_echo
    fetched = Visit.objects.get(pk=row.pk)
    return render(request, "djsite/visit.html", {
        "visit": fetched,
        "echo": echo,
        "count": Visit.objects.filter(number=number).count(),
        "vendor": connection.vendor,
    })


def ping(request):
    return HttpResponse("pong")
