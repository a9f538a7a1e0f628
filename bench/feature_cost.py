"""What metrics, usage and per-key limits cost an invocation, in CPU time, inside one process.

    DJANGO_SETTINGS_MODULE=project.settings .venv/bin/python bench/feature_cost.py \
        --model echo --key KEY --limited-key KEY [--features metrics,usage,limits]
        [--rounds 60] [--batch 200] [--results DIR]

Sends `POST /api/models/<model>/invocations` through Django's WSGI handler in batches, ON and
OFF in turn, many times over (the order alternating): OFF with metrics and usage switched off
and the key without limits, ON with the `--features` named (default all three: metrics and usage
switched on, and the key with limits; name fewer to see what each costs). Switching is done
in this one process between batches, so whatever else the machine does weighs on both alike;
each batch is timed in CPU time of the whole process (its background threads included: the usage
writer, the limits settler). Prints the CPU per invocation of each, the cost (ON / OFF - 1) from
the totals, and the median and spread of the per-round ratios; with --results DIR, appends them
to DIR/runs.jsonl (bench/tool.py report).

This leaves out what both pay alike outside Django (the HTTP server's parsing and writing:
`usage_cost.sh` measures through the real server), so the cost here is a share of a smaller
whole: an upper bound of the cost through the server. Run by `bench/usage_cost.sh` with its
throwaway install.
"""

from __future__ import annotations

import argparse
import statistics
import time

from overhead import check_echo, setup_django, wsgi_invoker
from tool import append_record

FEATURES = {"metrics", "usage", "limits"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="echo")
    parser.add_argument("--key", required=True, help="a key without limits (OFF)")
    parser.add_argument("--limited-key", required=True, help="a key with limits (ON)")
    parser.add_argument("--features", default="metrics,usage,limits", help="what ON turns on")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=200, help="invocations per batch")
    parser.add_argument("--results", help="append the numbers to RESULTS/runs.jsonl")
    args = parser.parse_args()

    setup_django()
    from django.conf import settings

    path = f"/api/models/{args.model}/invocations"
    features = set(args.features.split(","))
    if features - FEATURES:
        parser.error(f"--features: one or more of {', '.join(sorted(FEATURES))}")
    on_key = args.limited_key if "limits" in features else args.key
    sides = {
        "off": (wsgi_invoker(path, args.key), set()),
        "on": (wsgi_invoker(path, on_key), features),
    }

    def batch(name: str) -> int:
        call, switched_on = sides[name]
        settings.CHATMODELS_METRICS = "metrics" in switched_on
        settings.CHATMODELS_USAGE = "usage" in switched_on
        started = time.process_time_ns()
        for _ in range(args.batch):
            status, body = call()
        spent = time.process_time_ns() - started
        check_echo(status, body)
        return spent

    for name in ("off", "on", "off", "on"):  # warm up: load the model, open the database
        batch(name)
    spent: dict[str, list[int]] = {"off": [], "on": []}
    for round_ in range(args.rounds):
        for name in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            spent[name].append(batch(name))

    per_call = {
        name: sum(values) / len(values) / args.batch / 1000 for name, values in spent.items()
    }
    ratios = [on / off for on, off in zip(spent["on"], spent["off"], strict=True)]
    cost = per_call["on"] / per_call["off"] - 1
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"\nin-process cost: {args.rounds} rounds of {args.batch} invocations each way")
    print(f"  OFF (none of metrics, usage, limits): {per_call['off']:7.1f} µs CPU each")
    print(f"  ON  ({', '.join(sorted(features))}): {per_call['on']:7.1f} µs CPU each")
    print(
        f"  ON / OFF = {1 + cost:.3f}: a cost of {100 * cost:.1f}% "
        f"({per_call['on'] - per_call['off']:.1f} µs per invocation)"
    )
    print(
        f"  per-round ratios: median {statistics.median(ratios):.3f},"
        f" quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}"
    )
    if args.results:
        measures = {
            "OFF µs": round(per_call["off"], 1),
            "ON µs": round(per_call["on"], 1),
            "cost %": round(100 * cost, 1),
            "per-round ratio median": round(statistics.median(ratios), 3),
            "quartiles": f"{quartiles[0]:.3f}-{quartiles[2]:.3f}",
        }
        labels = {"ON": args.features, "rounds": args.rounds, "batch": args.batch}
        append_record(args.results, "usage cost in process", labels, measures)


if __name__ == "__main__":
    main()
