"""`manage.py register_model NAME TARGET [options]`: validate a ChatModel, store a new version."""

from __future__ import annotations

import argparse
import getpass

from django.core.management.base import BaseCommand, CommandError

from chatmodels import selectors, services
from chatmodels.management.commands._common import one_line_errors, parse_pairs, read_json_file
from chatmodels.management.commands._signals import termination_as_exit


class Command(BaseCommand):
    help = "Register a ChatModel (package.module:Class or path/file.py:Class) as a new version."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="model name, e.g. my-model (letters, digits, . _ -)")
        parser.add_argument(
            "target",
            help="the ChatModel class: package.module:Class or path/file.py:Class (looked up"
            " from the current folder)",
        )
        parser.add_argument(
            "--alias",
            action="append",
            default=[],
            metavar="ALIAS",
            help="point this alias at the new version; repeat for more",
        )
        parser.add_argument("--description", default=None, help="the model's description")
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a tag on the model; repeat for more",
        )
        parser.add_argument(
            "--artifact",
            action="append",
            default=[],
            metavar="NAME=PATH",
            help="a file or folder stored with the version, in context.artifacts[NAME] when the"
            " model loads; repeat for more",
        )
        parser.add_argument(
            "--model-config",
            metavar="FILE.json",
            help="a JSON object, given to the model as context.model_config",
        )
        parser.add_argument(
            "--input-example",
            metavar="FILE.json",
            help="a chat request predict is tried on at registration (default: one user"
            " message, 'Hello!')",
        )
        parser.add_argument(
            "--max-concurrency",
            type=int,
            metavar="N",
            help="requests each server process runs at once on this model (e.g. 1 for a local"
            " GPU model); more wait, then get 503. 0: no limit",
        )
        parser.add_argument(
            "--replicas",
            type=int,
            metavar="N",
            help="model worker processes each server process runs for this model (a new model: 1)",
        )
        parser.add_argument(
            "--memory-limit-mb",
            type=int,
            metavar="N",
            help="a model worker whose memory (RSS) goes over N MiB is stopped and its requests"
            " fail (502 model_crashed). 0: no limit",
        )
        # Refused, with a message saying why (MLflow's log_model takes one): not listed.
        parser.add_argument("--signature", metavar="FILE.json", help=argparse.SUPPRESS)

    def handle(self, *args, **options) -> None:
        model_config = None
        if options["model_config"]:
            model_config = read_json_file(options["model_config"], "model config")
            if not isinstance(model_config, dict):
                raise CommandError(
                    f"model config file {options['model_config']} must hold an object"
                )
        input_example = None
        if options["input_example"]:
            input_example = read_json_file(options["input_example"], "input example")
        # SIGTERM/SIGHUP mid-way exit through the service's clean-up: no package left behind.
        flags = {
            "max_concurrency": "--max-concurrency",
            "worker_replicas": "--replicas",
            "worker_memory_mb": "--memory-limit-mb",
        }
        with one_line_errors(flags), termination_as_exit():
            version = services.register_model(
                options["name"],
                options["target"],
                aliases=options["alias"],
                description=options["description"],
                tags=parse_pairs(options["tag"], "--tag"),
                artifacts=parse_pairs(options["artifact"], "--artifact", "NAME=PATH"),
                model_config=model_config,
                input_example=input_example,
                signature=options["signature"],
                created_by=_current_user(),
                max_concurrency=options["max_concurrency"],
                worker_replicas=options["replicas"],
                worker_memory_mb=options["memory_limit_mb"],
            )
        aliases = f", aliases {', '.join(options['alias'])}" if options["alias"] else ""
        self.stdout.write(
            f"Registered {version.model.name} version {version.version} "
            f"(sha256 {version.digest}){aliases}"
        )
        same = selectors.earlier_version_like(version)
        if same is not None:
            self.stdout.write(
                f"Note: the same code, configuration, artifacts and input example as version"
                f" {same}. To serve that one, move an alias instead: `manage.py set_alias"
                f" {version.model.name} ALIAS {same}`"
            )


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
