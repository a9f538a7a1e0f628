"""Content negotiation for the JSON API: always JSON, without parsing `Accept` on every call.

OpenAI's API answers JSON whatever `Accept` says, and so do we; DRF's default negotiation costs
a noticeable share of an invocation for a choice that has one answer.
"""

from rest_framework.negotiation import BaseContentNegotiation


class JSONOnlyNegotiation(BaseContentNegotiation):
    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type
