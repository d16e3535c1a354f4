"""python -m tests.bench [fanout ...] [--n N] [--runs R]: print a table, write JSON under var/bench/."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from . import (
    api,
    bigcreate,
    ceilings,
    counts,
    events,
    express,
    fanout,
    history,
    instances,
    memory,
    passwords,
    scheduler,
    streams,
    wakeup,
)
from .harness import Infra, Steal, summary, summary_row, table, write_results


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def bench_fanout(infra: Infra, args) -> dict:
    results = {"fanout": [], "broker": [], "smtp": [], "database": [], "steal": []}
    for run in range(args.runs):
        steal = Steal()
        measured = fanout.run(infra, args.n, args.consumers)
        ceiling = ceilings.measure(args.n, infra.mongo_url, infra.sink.smtp_port)
        results["fanout"].append(measured["rate"])
        for name, rate in ceiling.items():
            results[name].append(rate)
        results["steal"].append(steal.percent())
        print(
            f"run {run + 1}: fanout {measured['rate']:.0f}/s (API answered in {measured['api_seconds']:.2f}s), "
            f"ceilings " + ", ".join(f"{k} {v:.0f}/s" for k, v in ceiling.items()),
            flush=True,
        )
    figures = {name: summary(values) for name, values in results.items()}
    ratios = [
        f / min(b, s, d)
        for f, b, s, d in zip(results["fanout"], results["broker"], results["smtp"], results["database"], strict=True)
    ]
    figures["ratio_to_lowest_ceiling"] = summary(ratios)
    rows = [("figure", "median", "min", "max")]
    for name in ("fanout", "broker", "smtp", "database"):
        rows.append(summary_row(f"{name} /s", figures[name], "{:.0f}"))
    rows.append(summary_row("fanout / lowest ceiling", figures["ratio_to_lowest_ceiling"], "{:.2f}"))
    rows.append(summary_row("CPU steal %", figures["steal"], "{:.1f}"))
    print(f"\nfanout of {args.n} emails, {args.consumers} consumers, {args.runs} runs (target: ratio >= 0.5)")
    print(table(rows))
    return figures


def bench_bigcreate(infra: Infra, args) -> dict:
    sizes = [args.n, *([args.big_n] if args.big_n else [])]
    figures: dict = {}
    rows = [("figure", "median", "min", "max")]
    for n in sizes:
        # The inline reference of a 100,000-recipient create would outlast the HTTP client's timeout.
        inline = n <= 20000
        results: dict[str, list] = {"answer": [], "last_sent": [], "inline_answer": [], "inline_last_sent": []}
        for run in range(args.runs if n == args.n else 1):
            measured = bigcreate.run(infra, n, args.consumers, inline_reference=inline)
            results["answer"].append(measured["background"]["api_seconds"])
            results["last_sent"].append(measured["background"]["all_sent_after"])
            line = (
                f"run {run + 1}, {n} recipients: answered {measured['background']['status']} in "
                f"{measured['background']['api_seconds']:.2f}s, last sent after "
                f"{measured['background']['all_sent_after']:.1f}s"
            )
            if inline:
                results["inline_answer"].append(measured["inline"]["api_seconds"])
                results["inline_last_sent"].append(measured["inline"]["all_sent_after"])
                line += (
                    f"; inline create answered {measured['inline']['status']} in "
                    f"{measured['inline']['api_seconds']:.2f}s, last sent after "
                    f"{measured['inline']['all_sent_after']:.1f}s"
                )
            print(line, flush=True)
        figures[n] = {name: summary(values) for name, values in results.items() if values}
        for name, label in (
            ("answer", "background: create answered s"),
            ("inline_answer", "inline (reference): create answered s"),
            ("last_sent", "background: last sent s"),
            ("inline_last_sent", "inline (reference): last sent s"),
        ):
            if name in figures[n]:
                rows.append(summary_row(f"{n}: {label}", figures[n][name], "{:.2f}"))
    print(
        f"\ncreate of {' and '.join(map(str, sizes))} email recipients, {args.consumers} consumers "
        f"(target: answered within 2 s)"
    )
    print(table(rows))
    return figures


def bench_scheduler(infra: Infra, args) -> dict:
    n = args.schedules
    results = {"scheduler": [], "bare": [], "steal": []}
    for run in range(args.runs):
        steal = Steal()
        measured = scheduler.measure(infra.mongo_url, n)
        for name, value in measured.items():
            results[name].append(value)
        results["steal"].append(steal.percent())
        print(
            f"run {run + 1}: {measured['scheduler']:.0f} schedules fired/s, bare database work "
            f"{measured['bare']:.0f}/s",
            flush=True,
        )
    figures = {name: summary(values) for name, values in results.items()}
    figures["ratio_to_bare"] = summary([a / b for a, b in zip(results["scheduler"], results["bare"], strict=True)])
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (
        ("scheduler", "fired /s", "{:.0f}"),
        ("bare", "bare firing work /s", "{:.0f}"),
        ("ratio_to_bare", "scheduler / bare", "{:.2f}"),
        ("steal", "CPU steal %", "{:.1f}"),
    ):
        rows.append(summary_row(label, figures[name], fmt))
    print(f"\n{n} schedules due in one tick, {args.runs} runs")
    print(table(rows))
    return figures


def bench_peer(infra: Infra, args) -> dict:
    from . import celery_peer  # needs the bench extra (Celery); the other benches do not

    results: dict[str, list] = {
        "fanout": [],
        "celery": [],
        "celery_recording": [],
        "celery_recording_insert_seconds": [],
        "celery_recording_all_recorded_after": [],
        "steal": [],
    }
    for run in range(args.runs):
        steal = Steal()
        ours = fanout.run(infra, args.n, args.consumers)["rate"]
        celery = celery_peer.run(infra.sink, args.n, args.consumers)["rate"]
        recording = celery_peer.run(infra.sink, args.n, args.consumers, mongo_url=infra.mongo_url)
        results["fanout"].append(ours)
        results["celery"].append(celery)
        results["celery_recording"].append(recording["rate"])
        results["celery_recording_insert_seconds"].append(recording["insert_seconds"])
        results["celery_recording_all_recorded_after"].append(recording["all_recorded_after"])
        results["steal"].append(steal.percent())
        print(
            f"run {run + 1}: notifier {ours:.0f}/s, Celery {celery:.0f}/s, recording Celery "
            f"{recording['rate']:.0f}/s, insert to last status (bulk insert {recording['insert_seconds']:.2f}s; "
            f"every status saved {recording['all_recorded_after']:.1f}s after it; statuses {recording['statuses']})",
            flush=True,
        )
    figures = {name: summary(values) for name, values in results.items()}
    for key, peer in (("ratio_to_recording", "celery_recording"), ("ratio_to_celery", "celery")):
        figures[key] = summary([a / b for a, b in zip(results["fanout"], results[peer], strict=True)])
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (
        ("fanout", "notifier emails /s", "{:.0f}"),
        ("celery_recording", "Celery recording each status emails /s", "{:.0f}"),
        ("celery", "Celery writing nothing emails /s", "{:.0f}"),
        ("ratio_to_recording", "notifier / recording Celery (target >= 1.5)", "{:.2f}"),
        ("ratio_to_celery", "notifier / Celery writing nothing (target >= 1.0)", "{:.2f}"),
        ("celery_recording_insert_seconds", "recording Celery: bulk insert s (timed)", "{:.2f}"),
        ("celery_recording_all_recorded_after", "recording Celery: every status saved after s", "{:.1f}"),
        ("steal", "CPU steal %", "{:.1f}"),
    ):
        rows.append(summary_row(label, figures[name], fmt))
    print(f"\n{args.n} emails, {args.consumers} worker processes each, {args.runs} runs")
    print(table(rows))
    return figures


def bench_express(infra: Infra, args) -> dict:
    results: dict[str, list] = {"quiet_p50": [], "quiet_p99": [], "busy_p50": [], "busy_p99": [], "steal": []}
    for run in range(args.runs):
        steal = Steal()
        measured = express.run(infra, args.backlog, 50, args.consumers)
        for name in ("quiet_p50", "quiet_p99", "busy_p50", "busy_p99"):
            results[name].append(measured[name] * 1000)
        results["steal"].append(steal.percent())
        print(
            f"run {run + 1}: quiet p50 {measured['quiet_p50'] * 1000:.0f} ms p99 {measured['quiet_p99'] * 1000:.0f} ms;"
            f" behind {args.backlog} regular: p50 {measured['busy_p50'] * 1000:.0f} ms p99 "
            f"{measured['busy_p99'] * 1000:.0f} ms ({measured['backlog_left']} still queued at the end)",
            flush=True,
        )
    figures = {name: summary(values) for name, values in results.items()}
    figures["busy_over_quiet_p99"] = summary(
        [b / q for b, q in zip(results["busy_p99"], results["quiet_p99"], strict=True)]
    )
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (
        ("quiet_p50", "no backlog p50 ms", "{:.0f}"),
        ("quiet_p99", "no backlog p99 ms", "{:.0f}"),
        ("busy_p50", "backlog p50 ms", "{:.0f}"),
        ("busy_p99", "backlog p99 ms", "{:.0f}"),
        ("busy_over_quiet_p99", "backlog p99 / no-backlog p99", "{:.2f}"),
        ("steal", "CPU steal %", "{:.1f}"),
    ):
        rows.append(summary_row(label, figures[name], fmt))
    print(
        f"\n50 express notifications one by one, with and without {args.backlog} regular queued "
        f"(target: p99 <= 100 ms and <= 1.5x the no-backlog p99)"
    )
    print(table(rows))
    return figures


def bench_api(infra: Infra, args) -> dict:
    runs = []
    for run in range(args.runs):
        steal = Steal()
        measured = api.run(infra)
        measured["steal"] = steal.percent()
        runs.append(measured)
        print(
            f"run {run + 1}: "
            + ", ".join(
                f"{k} {v['rate']:.0f}/s p99 {v['p99_ms']:.1f} ms" for k, v in measured.items() if isinstance(v, dict)
            ),
            flush=True,
        )
    figures = {}
    rows = [("figure", "median", "min", "max")]
    for name in ("trivial", "bare_io", "create", "list"):
        figures[name] = {
            "rate": summary([r[name]["rate"] for r in runs]),
            "p99_ms": summary([r[name]["p99_ms"] for r in runs]),
        }
        for key, unit, fmt in (("rate", "req/s", "{:.0f}"), ("p99_ms", "p99 ms", "{:.1f}")):
            rows.append(summary_row(f"{name} {unit}", figures[name][key], fmt))
    figures["create_over_bare"] = summary([r["create"]["rate"] / r["bare_io"]["rate"] for r in runs])
    rows.append(summary_row("create / bare I/O", figures["create_over_bare"], "{:.2f}"))
    figures["steal"] = summary([r["steal"] for r in runs])
    rows.append(summary_row("CPU steal %", figures["steal"], "{:.1f}"))
    print(f"\nAPI at {api.CONNECTIONS} connections for {api.SECONDS} s (target: create >= 0.5x bare I/O)")
    print(table(rows))
    return figures


def bench_memory(infra: Infra, args) -> dict:
    measured = memory.run(infra, args.memory_n, 3, args.consumers)
    rows = [
        ("figure", "value"),
        ("server peak RSS MB", f"{measured['server_peak_mb']:.0f}"),
        ("consumer peak RSS MB", f"{measured['consumer_peak_mb']:.0f}"),
        ("server RSS after each run MB", " / ".join(f"{v:.0f}" for v in measured["server_after_rounds_mb"])),
        ("server growth over 3 runs %", f"{measured['growth_percent']:.1f}"),
    ]
    print(f"\n{args.memory_n}-recipient fan-outs, three in one server (target: server <= 150 MB, growth <= 5%)")
    print(table(rows))
    return measured


def bench_passwords(infra: Infra, args) -> dict:
    results: dict[str, list] = {
        "quiet_p50": [],
        "quiet_p99": [],
        "storm_p50": [],
        "storm_p99": [],
        "ratio": [],
        "steal": [],
    }
    for run in range(args.runs):
        steal = Steal()
        measured = passwords.run(infra)
        for name in ("quiet_p50", "quiet_p99", "storm_p50", "storm_p99", "ratio"):
            results[name].append(measured[name])
        results["steal"].append(steal.percent())
        print(
            f"run {run + 1}: /healthz p99 {measured['quiet_p99']:.1f} ms alone, {measured['storm_p99']:.1f} ms "
            f"under {passwords.STORM} concurrent wrong passwords (ratio {measured['ratio']:.2f}; storm answers "
            f"{measured['storm_statuses']}; probes {measured['probes']})",
            flush=True,
        )
    figures = {name: summary(values) for name, values in results.items()}
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (
        ("quiet_p50", "/healthz alone p50 ms", "{:.1f}"),
        ("quiet_p99", "/healthz alone p99 ms", "{:.1f}"),
        ("storm_p50", "/healthz storm p50 ms", "{:.1f}"),
        ("storm_p99", "/healthz storm p99 ms", "{:.1f}"),
        ("ratio", "storm p99 / alone p99", "{:.2f}"),
        ("steal", "CPU steal %", "{:.1f}"),
    ):
        rows.append(summary_row(label, figures[name], fmt))
    print(
        f"\n/healthz with and without {passwords.STORM} concurrent wrong-password requests, {args.runs} runs "
        f"(target: storm p99 <= 2x alone p99)"
    )
    print(table(rows))
    return figures


def bench_instances(infra: Infra, args) -> dict:
    counts = (1, 2, 3)
    results: dict[int, list] = {k: [] for k in counts}
    for run in range(args.runs):
        for k in counts:
            results[k].append(instances.run(infra, args.n, k))
        print(f"run {run + 1}: " + ", ".join(f"{k} instances {results[k][-1]['rate']:.0f}/s" for k in counts))
    figures = {f"{k}_instances": summary([r["rate"] for r in results[k]]) for k in counts}
    rows = [("figure", "median", "min", "max")]
    for k in counts:
        rows.append(summary_row(f"{k} instance(s), {2 * k} consumers /s", figures[f"{k}_instances"], "{:.0f}"))
        ratio = summary([a["rate"] / b["rate"] for a, b in zip(results[k], results[1], strict=True)])
        figures[f"{k}_over_1"] = ratio
        rows.append(summary_row(f"{k} / 1 instance", ratio, "{:.2f}"))
    print(f"\nfan-out of {args.n} emails through 1, 2 and 3 instances on one database and broker, {args.runs} runs")
    print(table(rows))
    return figures


def bench_history(infra: Infra, args) -> dict:
    """One history grown through the sizes; each row's reference is the old one-query page on the same data."""
    sizes = sorted(args.sizes)
    runs = [history.run(infra, sizes) for _ in range(args.runs)]
    figures: dict = {"sizes": sizes}
    rows = [("deliveries", "notifications", "figure", "p50 ms (median of runs)", "old one-query page, p50 ms")]
    for i, size in enumerate(sizes):
        per = {key: summary([run[i][key] for run in runs]) for key in runs[0][i]}
        figures[str(size)] = per
        count = f"{per['deliveries']['median']:.0f}", f"{per['notifications']['median']:.0f}"
        for name, label in (("admin", "admin list"), ("client", "client app list"), ("inbox", "user's inbox page")):
            rows.append((*count, f"{label}, API", f"{per[f'{name}_api_ms']['median']:.1f}", ""))
            rows.append(
                (
                    *count,
                    f"{label}, database",
                    f"{per[f'{name}_new_db_ms']['median']:.1f}",
                    f"{per[f'{name}_old_db_ms']['median']:.1f}",
                )
            )
    print(f"\nlist pages of {history.PAGE} against a growing history, {args.runs} runs (target: list p50 <= 50 ms)")
    print(table(rows))
    if args.retention:
        figures["retention"] = history.retention(infra, args.retention)
    return figures


def bench_counts(infra: Infra, args) -> dict:
    sizes = [2000, 100000]
    runs = [counts.run(infra, sizes) for _ in range(args.runs)]
    figures: dict = {}
    rows = [("deliveries", "figure", "median", "min", "max")]
    for i, size in enumerate(sizes):
        per = {key: summary([run[i][key] for run in runs]) for key in ("api_p50_ms", "old_aggregate_p50_ms")}
        figures[str(size)] = per
        rows.append((str(size), *summary_row("detail with counts, API, p50 ms", per["api_p50_ms"], "{:.1f}")))
        rows.append(
            (str(size), *summary_row("old aggregate, database only, p50 ms", per["old_aggregate_p50_ms"], "{:.1f}"))
        )
    print(f"\ndetail of one notification with its counts, {args.runs} runs (target: p50 <= 100 ms at 100,000)")
    print(table(rows))
    return figures


def bench_wakeup(infra: Infra, args) -> dict:
    keys = ("instant_p50", "instant_p99", "instant_max", "spread_p50", "spread_p99", "spread_max")
    results: dict[str, list] = {k: [] for k in (*keys, "immediate", "scheduled", "ratio", "steal", "load")}
    details = []  # every run's measurements, margins included
    for run in range(args.runs):
        steal = Steal()
        measured = wakeup.run(infra, args.wakeup_n, args.consumers)
        details.append(measured)
        for case, prefix in (("one_instant", "instant"), ("spread", "spread")):
            for stat in ("p50", "p99", "max"):
                results[f"{prefix}_{stat}"].append(measured[case][f"{stat}_ms"])
        drain = measured["drain"]
        results["immediate"].append(drain["immediate_rate"])
        results["scheduled"].append(drain["scheduled_rate"])
        results["ratio"].append(drain["ratio"])
        results["steal"].append(steal.percent())
        results["load"].append(max(measured["load_1min"]))
        instant, spread = measured["one_instant"], measured["spread"]
        print(
            f"run {run + 1}: one instant {wakeup.describe(instant)} "
            f"(stored {instant['stored_before_due_s']:.1f}s before due); "
            f"spread {wakeup.describe(spread)}; "
            f"{args.wakeup_n} immediate {drain['immediate_rate']:.0f}/s ({drain['immediate_seconds']:.1f}s), "
            f"scheduled {drain['scheduled_rate']:.0f}/s ({drain['scheduled_seconds']:.1f}s after due, first sent "
            f"{drain['scheduled_first_sent_ms']:.0f} ms after, stored {drain['stored_before_due_s']:.1f}s before "
            f"due), ratio {drain['ratio']:.2f}",
            flush=True,
        )
        if min(instant["stored_before_due_s"], spread["created_before_first_due_s"], drain["stored_before_due_s"]) < 2:
            print("warning: a scheduled create was stored less than 2 s before its due instant", flush=True)
    figures = {name: summary(values) for name, values in results.items()}
    figures["detail"] = details
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (
        ("instant_p50", f"{wakeup.PRECISION} due at one instant: late p50 ms", "{:.0f}"),
        ("instant_p99", f"{wakeup.PRECISION} due at one instant: late p99 ms (target <= 2000)", "{:.0f}"),
        ("instant_max", f"{wakeup.PRECISION} due at one instant: late max ms", "{:.0f}"),
        ("spread_p50", f"{wakeup.PRECISION} spread over {wakeup.SPREAD} s: late p50 ms", "{:.0f}"),
        ("spread_p99", f"{wakeup.PRECISION} spread over {wakeup.SPREAD} s: late p99 ms (target <= 2000)", "{:.0f}"),
        ("spread_max", f"{wakeup.PRECISION} spread over {wakeup.SPREAD} s: late max ms", "{:.0f}"),
        ("immediate", f"{args.wakeup_n} sent at once (create to last sent) /s", "{:.0f}"),
        ("scheduled", f"{args.wakeup_n} due at one instant (due to last sent) /s", "{:.0f}"),
        ("ratio", "scheduled drain / immediate fan-out (target >= 0.8)", "{:.2f}"),
        ("steal", "CPU steal %", "{:.1f}"),
        ("load", "load average 1 min (higher of start, end)", "{:.1f}"),
    ):
        rows.append(summary_row(label, figures[name], fmt))
    print(
        f"\nscheduled wake-up (WAKE_INTERVAL default), email, {args.consumers} consumers, {args.runs} runs; "
        f"lateness = delivery sent_at - send_at"
    )
    print(table(rows))
    return figures


def bench_streams(infra: Infra, args) -> dict:
    keys = (
        "held",
        "rss_per_stream_kb",
        "single_p50",
        "single_p99",
        "many_p50",
        "many_p99",
        "api_quiet_p99",
        "api_busy_p99",
        "open_seconds",
        "fanout_seconds",
    )
    results: dict[str, list] = {k: [] for k in (*keys, "api_ratio", "steal")}
    details = []
    for run in range(args.runs):
        steal = Steal()
        measured = streams.run(infra, args.streams, args.consumers)
        details.append(measured)
        for key in keys:
            results[key].append(measured[key])
        results["api_ratio"].append(measured["api_busy_p99"] / measured["api_quiet_p99"])
        results["steal"].append(steal.percent())
        print(
            f"run {run + 1}: {measured['held']} of {args.streams} streams held, {measured['received']} events "
            f"received; {measured['rss_per_stream_kb']:.1f} KB per stream ({measured['rss_before_mb']:.0f} -> "
            f"{measured['rss_after_mb']:.0f} MB); push p50/p99 {measured['single_p50']:.0f}/"
            f"{measured['single_p99']:.0f} ms with 1 stream, {measured['many_p50']:.0f}/{measured['many_p99']:.0f} "
            f"ms with {args.streams}; API p99 {measured['api_quiet_p99']:.0f} ms without, "
            f"{measured['api_busy_p99']:.0f} ms with",
            flush=True,
        )
    figures = {name: summary(values) for name, values in results.items()}
    figures["detail"] = details
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (
        ("held", f"streams held of {args.streams} (target 5000)", "{:.0f}"),
        ("rss_per_stream_kb", "server RSS per stream, KB", "{:.1f}"),
        ("single_p50", "push latency, 1 stream: p50 ms (reference)", "{:.0f}"),
        ("single_p99", "push latency, 1 stream: p99 ms (reference)", "{:.0f}"),
        ("many_p50", f"push latency, {args.streams} streams, during their fan-out: p50 ms", "{:.0f}"),
        ("many_p99", f"push latency, {args.streams} streams, during their fan-out: p99 ms (target <= 250)", "{:.0f}"),
        ("api_quiet_p99", "GET /api/v1/notifications p99 ms, no streams", "{:.0f}"),
        ("api_busy_p99", f"GET /api/v1/notifications p99 ms, {args.streams} streams connected", "{:.0f}"),
        ("api_ratio", "API p99 with / without the streams (target <= 1.5)", "{:.2f}"),
        ("open_seconds", f"seconds to open the {args.streams} streams", "{:.1f}"),
        ("fanout_seconds", f"seconds from the create to the last of the {args.streams} events", "{:.1f}"),
        ("steal", "CPU steal %", "{:.1f}"),
    ):
        rows.append(summary_row(label, figures[name], fmt))
    print(f"\ninbox streams, {args.consumers} consumers, {args.runs} runs")
    print(table(rows))
    return figures


def bench_events(infra: Infra, args) -> dict:
    keys = ("reference_rate", "fanout_rate", "event_rate", "ratio", "lag_p50_ms", "lag_p99_ms", "repeats", "steal")
    results: dict[str, list] = {k: [] for k in keys}
    for run in range(args.runs):
        steal = Steal()
        reference = events.run(infra, args.n, args.consumers, events=False)
        measured = events.run(infra, args.n, args.consumers, events=True)
        results["reference_rate"].append(reference["fanout_rate"])
        for key in ("fanout_rate", "event_rate", "lag_p50_ms", "lag_p99_ms", "repeats"):
            results[key].append(measured[key])
        results["ratio"].append(measured["event_rate"] / reference["fanout_rate"])
        results["steal"].append(steal.percent())
        print(
            f"run {run + 1}: fan-out {reference['fanout_rate']:.0f}/s without events; with an endpoint for every "
            f"type {measured['fanout_rate']:.0f}/s, events {measured['event_rate']:.0f}/s "
            f"({results['ratio'][-1]:.2f}x), lag p50/p99 {measured['lag_p50_ms']:.0f}/{measured['lag_p99_ms']:.0f} ms",
            flush=True,
        )
    figures = {name: summary(values) for name, values in results.items()}
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (
        ("reference_rate", "fan-out without events, /s (reference)", "{:.0f}"),
        ("fanout_rate", "fan-out with an endpoint for every type, /s", "{:.0f}"),
        ("event_rate", "events arrived at the receiver, /s", "{:.0f}"),
        ("ratio", "events /s over the reference fan-out /s (target >= 0.8)", "{:.2f}"),
        ("lag_p50_ms", "lag, state change to arrival, p50 ms", "{:.0f}"),
        ("lag_p99_ms", "lag, state change to arrival, p99 ms", "{:.0f}"),
        ("repeats", "POSTs repeated (same id)", "{:.0f}"),
        ("steal", "CPU steal %", "{:.1f}"),
    ):
        rows.append(summary_row(label, figures[name], fmt))
    print(f"\nstatus events during a {args.n}-recipient fan-out, {args.runs} runs")
    print(table(rows))
    return figures


BENCHES = {
    "fanout": bench_fanout,
    "bigcreate": bench_bigcreate,
    "scheduler": bench_scheduler,
    "peer": bench_peer,
    "express": bench_express,
    "api": bench_api,
    "memory": bench_memory,
    "passwords": bench_passwords,
    "instances": bench_instances,
    "history": bench_history,
    "counts": bench_counts,
    "wakeup": bench_wakeup,
    "streams": bench_streams,
    "events": bench_events,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("benches", nargs="*", help=f"some of: {', '.join(BENCHES)} (default: fanout)")
    parser.add_argument("--n", type=int, default=10000, help="recipients / messages per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--schedules", type=int, default=1000, help="schedules due at once (scheduler)")
    parser.add_argument("--backlog", type=int, default=20000, help="regular deliveries queued (express)")
    parser.add_argument("--memory-n", type=int, default=100000, help="recipients per fan-out (memory)")
    parser.add_argument("--streams", type=int, default=5000, help="inbox streams held at once (streams)")
    parser.add_argument("--wakeup-n", type=int, default=20000, help="deliveries due at one instant (wakeup drain)")
    parser.add_argument(
        "--big-n", type=int, default=0, help="also one background create of this many recipients (bigcreate)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10000, 100000], help="deliveries in the history (history)"
    )
    parser.add_argument(
        "--retention", type=int, default=20000, help="old deliveries retention deletes, probed (history; 0: none)"
    )
    args = parser.parse_args(argv)
    output = {"machine": machine(), "n": args.n, "runs": args.runs}
    with Infra() as infra:
        for name in args.benches or ["fanout"]:
            output[name] = BENCHES[name](infra, args)
    print(f"\nresults written to {write_results('-'.join(args.benches or ['fanout']), output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
