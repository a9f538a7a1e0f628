"""Rate limits per API key (`CHATMODELS_THROTTLE_RATE`, e.g. `600/min`; empty turns them off)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Counts requests per key (per client address for anonymous calls) in the default cache."""

    scope = "api_key"

    def get_rate(self) -> str | None:
        # Read per request, not at import, so the setting can change without a restart of DRF.
        return settings.CHATMODELS_THROTTLE_RATE or None

    def get_cache_key(self, request, view) -> str:
        key = request.auth
        ident = f"key:{key.id}" if key is not None else f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
