"""python -m tests.bench [fanout ...] [--n N] [--runs R]: print a table, write JSON under var/bench/."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from . import ceilings, fanout, scheduler
from .harness import Infra, Steal, summary, table, write_results


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "when": time.strftime("%Y-%m-%d %H:%M:%S")}


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
        print(f"run {run + 1}: fanout {measured['rate']:.0f}/s (API answered in {measured['api_seconds']:.2f}s), "
              f"ceilings " + ", ".join(f"{k} {v:.0f}/s" for k, v in ceiling.items()), flush=True)
    figures = {name: summary(values) for name, values in results.items()}
    ratios = [f / min(b, s, d) for f, b, s, d in zip(results["fanout"], results["broker"], results["smtp"],
                                                      results["database"])]
    figures["ratio_to_lowest_ceiling"] = summary(ratios)
    rows = [("figure", "median", "min", "max")]
    for name in ("fanout", "broker", "smtp", "database"):
        f = figures[name]
        rows.append((f"{name} /s", f"{f['median']:.0f}", f"{f['min']:.0f}", f"{f['max']:.0f}"))
    r = figures["ratio_to_lowest_ceiling"]
    rows.append(("fanout / lowest ceiling", f"{r['median']:.2f}", f"{r['min']:.2f}", f"{r['max']:.2f}"))
    s = figures["steal"]
    rows.append(("CPU steal %", f"{s['median']:.1f}", f"{s['min']:.1f}", f"{s['max']:.1f}"))
    print(f"\nfanout of {args.n} emails, {args.consumers} consumers, {args.runs} runs (target: ratio >= 0.5)")
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
        print(f"run {run + 1}: {measured['scheduler']:.0f} schedules fired/s, bare database work "
              f"{measured['bare']:.0f}/s", flush=True)
    figures = {name: summary(values) for name, values in results.items()}
    figures["ratio_to_bare"] = summary([a / b for a, b in zip(results["scheduler"], results["bare"])])
    rows = [("figure", "median", "min", "max")]
    for name, label, fmt in (("scheduler", "fired /s", "{:.0f}"), ("bare", "bare firing work /s", "{:.0f}"),
                             ("ratio_to_bare", "scheduler / bare", "{:.2f}"), ("steal", "CPU steal %", "{:.1f}")):
        f = figures[name]
        rows.append((label, fmt.format(f["median"]), fmt.format(f["min"]), fmt.format(f["max"])))
    print(f"\n{n} schedules due in one tick, {args.runs} runs")
    print(table(rows))
    return figures


BENCHES = {"fanout": bench_fanout, "scheduler": bench_scheduler}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("benches", nargs="*", help=f"some of: {', '.join(BENCHES)} (default: fanout)")
    parser.add_argument("--n", type=int, default=10000, help="recipients / messages per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--schedules", type=int, default=1000, help="schedules due at once (scheduler)")
    args = parser.parse_args(argv)
    output = {"machine": machine(), "n": args.n, "runs": args.runs}
    with Infra() as infra:
        for name in args.benches or ["fanout"]:
            output[name] = BENCHES[name](infra, args)
    print(f"\nresults written to {write_results('-'.join(args.benches or ['fanout']), output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
