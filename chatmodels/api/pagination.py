"""Pages of the registry listings: DRF's page numbers, read as strictly as version numbers."""

from __future__ import annotations

from rest_framework import pagination

from chatmodels.exceptions import InvalidRequest, NotFound, raises, short_repr


@raises(InvalidRequest, NotFound)  # not a page number; a page past the last
class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=N`: ASCII digits from 1 (or `last`); anything else, even empty, is a 400 naming
    `page`, where DRF would quietly answer page 1 for `?page=` and 404 for `?page=²`."""

    def get_page_number(self, request, paginator) -> int:
        text = request.query_params.get(self.page_query_param)
        if text is None:
            return 1
        if text in self.last_page_strings:
            return paginator.num_pages
        if len(text) <= 10 and text.isascii() and text.isdigit() and int(text) >= 1:
            return int(text)
        raise InvalidRequest(
            f"page: expected a page number (1, 2, … in ASCII digits), got {short_repr(text, 40)}",
            param="page",
        )

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 9_999_999_999}
                parameter["description"] = "A page number (or `last`)."
        return parameters
