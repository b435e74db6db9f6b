#!/usr/bin/env python3
"""Prints bench.py's results as markdown: every variant, then each language's per-event
time split into layers by differences between variants measured in the same run.

usage: table.py RESULT.json
"""

import json
import sys

LAYERS = [
    # (name, minuend, subtrahend, correction): layer = minuend - subtrahend - correction
    ("host: decode the Debezium JSON, lower the event, lift and print the output row (Rust passthrough)", "rust-row", None, None),
    ("lifting the batch into language objects + the call (raw-null - Rust drop)", "{l}-raw-null", "rust-drop", None),
    ("SDK dispatch: exportTransform / export_transform (null - raw-null)", "{l}-null", "{l}-raw-null", None),
    ("lowering a whole row back out (passthrough - null, less Rust's row - drop)", "{l}-passthrough", "{l}-null", ("rust-row", "rust-drop")),
    ("user code: drop/mask/trim/lower, setColumn, Value, the loop (norfc - passthrough)", "{l}-norfc", "{l}-passthrough", None),
    ("SDK rfc3339 (nohash - norfc)", "{l}-nohash", "{l}-norfc", None),
    ("SHA-256 (full - nohash; the host's since 3dec700)", "{l}-full", "{l}-nohash", None),
]


def main():
    r = json.load(open(sys.argv[1]))
    v = r["variants"]
    med = {k: x["median_cpu_us"] for k, x in v.items()}
    loads = r["load_1min"]
    print(f"{r['events_full']} change events (bundled stream), per event = slope between the first "
          f"{r['events_prefix']} and all of them; {r['reps']} repetitions; CPU time of `wrt test`; "
          f"1-min load average {min(loads):.1f}..{max(loads):.1f}\n")
    print("| variant | µs/event (median CPU) | min..max | spread | median wall | cold start CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, x in v.items():
        lo, hi = min(x["cpu_us"]), max(x["cpu_us"])
        spread = (hi - lo) / x["median_cpu_us"] * 100 if x["median_cpu_us"] else 0
        print(f"| {k} | {x['median_cpu_us']:,.1f} | {lo:,.1f}..{hi:,.1f} | {spread:.0f}% | "
              f"{x['median_wall_us']:,.1f} | {x['cold_cpu_s']:.1f} s |")
    for lang in ("js", "python"):
        full = med.get(f"{lang}-full")
        if full is None:
            continue
        print(f"\n**{lang}**: full = {full:,.1f} µs/event = {full / med['rust-full']:.0f}× the Rust PII guest "
              f"({med['rust-full']:,.1f}) in the same run\n")
        print("| layer | µs/event | share of full |")
        print("|---|---:|---:|")
        total = 0.0
        for name, a, b, corr in LAYERS:
            a, b = a.format(l=lang), b.format(l=lang) if b else None
            if a not in med or (b and b not in med):
                continue
            x = med[a] - (med[b] if b else 0) - ((med[corr[0]] - med[corr[1]]) if corr else 0)
            total += x
            print(f"| {name} | {x:,.1f} | {x / full * 100:.0f}% |")
        print(f"| sum (= full) | {total:,.1f} | {total / full * 100:.0f}% |")
        if f"{lang}-two-cols" in med:
            t = med[f"{lang}-two-cols"]
            print(f"\ntwo-cols (reads email and phone, returns them): {t:,.1f} µs/event = null + "
                  f"{t - med[f'{lang}-null']:,.1f}; passthrough = null + "
                  f"{med[f'{lang}-passthrough'] - med[f'{lang}-null']:,.1f}")


if __name__ == "__main__":
    main()
