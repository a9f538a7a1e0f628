"""Django app configuration."""

from django.apps import AppConfig


class ChatModelsConfig(AppConfig):
    name = "chatmodels"
    verbose_name = "Chat models"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from chatmodels.models import ApiKey, ModelAlias, ModelVersion, RegisteredModel
        from chatmodels.serving import lookups

        # What serving remembers of keys and versions is forgotten at any change to them.
        for model in (ApiKey, RegisteredModel, ModelVersion, ModelAlias):
            post_save.connect(
                lookups.forget, sender=model, dispatch_uid=f"lookups-{model.__name__}"
            )
            post_delete.connect(
                lookups.forget, sender=model, dispatch_uid=f"lookups-del-{model.__name__}"
            )
        m2m_changed.connect(
            lookups.forget, sender=ApiKey.allowed_models.through, dispatch_uid="lookups-m2m"
        )
