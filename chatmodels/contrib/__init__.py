"""Ready-made models: register them by name, configure them with `--model-config`.

    python manage.py register_model NAME chatmodels.contrib:OpenAICompatibleModel \\
        --model-config upstream.json
"""

from chatmodels.contrib.openai_compatible import OpenAICompatibleModel

__all__ = ["OpenAICompatibleModel"]
