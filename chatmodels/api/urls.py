"""Routes of the HTTP API (mounted at the site root by project/urls.py)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.negotiation import DefaultContentNegotiation

from chatmodels.api import (
    schema,  # noqa: F401 - registers the API-key security scheme
    stored_responses,
    views,
)

models = views.RegisteredModelViewSet
versions = views.ModelVersionViewSet

urlpatterns = [
    path("api/models/", models.as_view({"get": "list"}), name="model-list"),
    path("api/models/<str:name>/", models.as_view({"get": "retrieve"}), name="model-detail"),
    path(
        "api/models/<str:name>/invocations",
        models.as_view({"post": "invocations"}),
        name="model-invocations",
    ),
    path(
        "api/models/<str:name>/versions/",
        versions.as_view({"get": "list"}),
        name="version-list",
    ),
    path(
        "api/models/<str:name>/versions/<str:version>/",
        versions.as_view({"get": "retrieve"}),
        name="version-detail",
    ),
    path("v1/chat/completions", views.ChatCompletionsView.as_view(), name="chat-completions"),
    path("v1/responses", views.ResponsesView.as_view(), name="responses"),
    path(
        "v1/responses/<str:response_id>",
        stored_responses.StoredResponseView.as_view(),
        name="response-detail",
    ),
    path(
        "v1/responses/<str:response_id>/input_items",
        stored_responses.ResponseInputItemsView.as_view(),
        name="response-input-items",
    ),
    path("v1/conversations", stored_responses.ConversationsView.as_view(), name="conversations"),
    path(
        "v1/conversations/<str:conversation_id>",
        stored_responses.ConversationView.as_view(),
        name="conversation-detail",
    ),
    path(
        "v1/conversations/<str:conversation_id>/items",
        stored_responses.ConversationItemsView.as_view(),
        name="conversation-items",
    ),
    path(
        "v1/conversations/<str:conversation_id>/items/<str:item_id>",
        stored_responses.ConversationItemView.as_view(),
        name="conversation-item",
    ),
    path("v1/models", views.OpenAIModelsView.as_view(), name="openai-models"),
    path("v1/models/<path:model>", views.OpenAIModelView.as_view(), name="openai-model"),
    path("api/usage/", views.UsageView.as_view(), name="usage"),
    path("health", views.HealthView.as_view(), name="health"),
    path("ready", views.ReadyView.as_view(), name="ready"),
    path("version", views.VersionView.as_view(), name="version"),
    path("metrics", views.MetricsView.as_view(), name="metrics"),
    # The schema alone comes in several formats (YAML by default, `?format=json`).
    path(
        "api/schema/",
        SpectacularAPIView.as_view(content_negotiation_class=DefaultContentNegotiation),
        name="schema",
    ),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]
