import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from playground.handlers import OneHopASGIHandler  # noqa: E402 - needs the apps loaded above
from playground.startup import refuse_debug, warm_up  # noqa: E402

refuse_debug()  # the ASGI entry point is the production server's alone (`make serve`)
application = OneHopASGIHandler()
warm_up()
