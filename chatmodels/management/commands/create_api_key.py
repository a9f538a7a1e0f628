"""`manage.py create_api_key NAME [--model M]... [--rpm N] [--tpm N] [--monthly-budget N]
[--metrics]`: the raw key is printed once, on the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chatmodels import services
from chatmodels.management.commands._common import one_line_errors


class Command(BaseCommand):
    help = "Create an API key (optionally limited to some models and rates) and print it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="who or what the key is for")
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="MODEL",
            help="limit the key to this model; repeat for more (default: all models)",
        )
        parser.add_argument("--rpm", type=int, metavar="N", help="most requests per minute")
        parser.add_argument(
            "--tpm", type=int, metavar="N", help="most prompt + completion tokens per minute"
        )
        parser.add_argument(
            "--monthly-budget",
            type=int,
            metavar="N",
            help="most prompt + completion tokens per calendar month (UTC)",
        )
        parser.add_argument(
            "--metrics",
            action="store_true",
            help="the key may read GET /metrics from other hosts",
        )

    def handle(self, *args, **options) -> None:
        flags = {
            "requests_per_minute": "--rpm",
            "tokens_per_minute": "--tpm",
            "monthly_token_budget": "--monthly-budget",
        }
        with one_line_errors(flags):
            key, raw_key = services.create_api_key(
                name=options["name"],
                models=options["model"],
                requests_per_minute=options["rpm"],
                tokens_per_minute=options["tpm"],
                monthly_token_budget=options["monthly_budget"],
                can_read_metrics=options["metrics"],
            )
        scope = ", ".join(options["model"]) if options["model"] else "all models"
        terms = [
            f"{value} {unit}"
            for value, unit in (
                (key.requests_per_minute, "requests/min"),
                (key.tokens_per_minute, "tokens/min"),
                (key.monthly_token_budget, "tokens/month"),
            )
            if value is not None
        ]
        if key.can_read_metrics:
            terms.append("may read metrics")
        details = f" ({', '.join(terms)})" if terms else ""
        self.stdout.write(
            f"Created API key {key.prefix}… for {scope}{details}. It is shown only once:"
        )
        self.stdout.write(raw_key)
