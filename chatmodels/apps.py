"""Django app configuration."""

from django.apps import AppConfig


class ChatModelsConfig(AppConfig):
    name = "chatmodels"
    verbose_name = "Chat models"
    default_auto_field = "django.db.models.BigAutoField"
