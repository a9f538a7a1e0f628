"""`{% key_usage key %}`: the usage block of an API key's admin page."""

from django import template

from chatmodels.admin.usage import key_usage as key_usage_context
from chatmodels.models import ApiKey

register = template.Library()


@register.inclusion_tag("admin/chatmodels/apikey/usage.html")
def key_usage(key: ApiKey) -> dict:
    return key_usage_context(key)
