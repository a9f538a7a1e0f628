# Usage accounting: one row per model, version, API key and hour, written by additive upserts.

import django.db.models.deletion
import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chatmodels', '0003_apikey_limits_and_metrics'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageBucket',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.PositiveIntegerField()),
                ('hour', models.DateTimeField(help_text='Start of the hour (UTC)')),
                ('requests', models.BigIntegerField(default=0)),
                ('errors', models.BigIntegerField(default=0, help_text='Requests answered with an error')),
                ('invalid_requests', models.BigIntegerField(default=0, help_text='4xx but 429: bad input, 403')),
                ('rejected', models.BigIntegerField(default=0, help_text='429 limits and 503 capacity')),
                ('model_errors', models.BigIntegerField(default=0, help_text='500/502: the model failed')),
                ('timeouts', models.BigIntegerField(default=0, help_text='504: the model did not answer')),
                ('prompt_tokens', models.BigIntegerField(default=0)),
                ('completion_tokens', models.BigIntegerField(default=0)),
                ('latency_ms_sum', models.BigIntegerField(default=0)),
                ('latency_ms_max', models.BigIntegerField(default=0)),
                ('api_key', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='usage', to='chatmodels.apikey')),
                ('model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='usage', to='chatmodels.registeredmodel')),
            ],
            options={
                'ordering': ['-hour', 'model', 'version'],
                'verbose_name': 'usage bucket',
                'verbose_name_plural': 'usage',
                'indexes': [models.Index(fields=['hour'], name='usage_hour_idx'), models.Index(fields=['api_key', 'hour'], name='usage_key_hour_idx')],
                'constraints': [models.UniqueConstraint(models.F('model'), models.F('version'), django.db.models.functions.comparison.Coalesce('api_key', models.Value(0)), models.F('hour'), name='unique_usage_bucket')],
            },
        ),
    ]
