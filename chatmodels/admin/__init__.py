"""The Django admin: registered models, their read-only versions, aliases, tags and API keys.

One module per registered model (`registered_models.py`, `versions.py`, `api_keys.py`, `usage.py`
for the usage buckets' charts), the display helpers they share (`display.py`), the version page's
content (`version_page.py`), the playground views (`playground.py`), the model workers page
(`workers.py`), the login throttle (`login.py`), and the stored responses of the Responses API
(`stored_responses.py`, read-only). Writes go through `services`; a version is shown, never
edited, except its `status`.
"""

from django.contrib import admin
from django.urls import reverse_lazy

# Importing the modules registers their ModelAdmins with the admin site.
from chatmodels.admin import (  # noqa: F401
    api_keys,
    registered_models,
    stored_responses,
    usage,
    versions,
)
from chatmodels.admin.login import throttled

# Logins are throttled per client address and per username (`login.py`).
admin.site.login = throttled(admin.site.login, admin.site)  # type: ignore[method-assign]

admin.site.site_header = "chatmodels"
admin.site.site_title = "chatmodels"
admin.site.index_title = "Registry and serving"
# "View site" leads to the landing page, which links the API docs and the health endpoints.
# Lazy (the URLconf is not loaded yet), which Django takes although django-stubs say str.
admin.site.site_url = reverse_lazy("home")  # type: ignore[assignment]
# Three models need no sidebar, and lists need its 280 px to show every column at 1,280 px.
admin.site.enable_nav_sidebar = False
