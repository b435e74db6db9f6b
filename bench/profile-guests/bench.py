#!/usr/bin/env python3
"""Times profile variants per event through `wrt test`, side by side, in one run.

Each variant runs `wrt test --events FILE --batch-size 256 -c salt=bench-salt` on a prefix
of the bundled stream (SMALL records) and on all of it. Per event = (CPU of the full run -
CPU of the prefix run) / (change events in the full stream - change events in the prefix):
process start, loading the compiled component from the cache and `init` cancel out.
CPU time (user + system of the `wrt` process, from wait4) is used, not wall time: on a
machine shared with other work a niced process waits for a core, and wall time measures the
queue. Both are printed. Variants run in a different order each repetition.

usage: bench.py WRT EVENTS REPS SMALL OUT.json LABEL=WASM[,KEY=VALUE...] ...
"""

import json
import os
import random
import statistics
import subprocess
import sys
import time


def change_events(path):
    n = 0
    with open(path) as f:
        for line in f:
            value = json.loads(line).get("value")
            payload = value.get("payload") if isinstance(value, dict) and "payload" in value else value
            if isinstance(payload, dict) and payload.get("op") in ("c", "u", "d", "r", "t"):
                n += 1
    return n


def run(wrt, events, wasm, config, cache, out=os.devnull):
    args = [wrt, "test", "--events", events, "--cache-dir", cache, "--batch-size", "256",
            "--timeout-ms", "600000", "--memory-mb", "512", wasm]
    for kv in config:
        args += ["-c", kv]
    started = time.perf_counter()
    with open(out, "w") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"wrt test {wasm} failed ({status}): {stderr[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall


def main():
    wrt, events, reps, small, out_json, *specs = sys.argv[1:]
    reps, small = int(reps), int(small)
    work = os.path.dirname(os.path.abspath(out_json))
    cache = os.path.join(work, "cache")
    prefix = os.path.join(work, f"prefix-{small}.jsonl")
    with open(events) as f, open(prefix, "w") as p:
        for i, line in enumerate(f):
            if i >= small:
                break
            p.write(line)
    n_full, n_small = change_events(events), change_events(prefix)
    variants = []
    for spec in specs:
        label, rest = spec.split("=", 1)
        wasm, *config = rest.split(",")
        variants.append((label, wasm, ["salt=bench-salt"] + config))

    # Warm-up: the first run of a component compiles it into the cache (cold start: that run's
    # CPU, on the prefix; the full variants run on all events and keep their output so they
    # can be compared with one another).
    cold = {}
    for label, wasm, config in variants:
        if label.endswith("-full"):
            cpu, wall = run(wrt, events, wasm, config, cache, os.path.join(work, f"out-{label}.jsonl"))
        else:
            cpu, wall = run(wrt, prefix, wasm, config, cache)
        cold[label] = (cpu, wall)
        print(f"warm-up {label}: {cpu:.1f} s CPU, {wall:.1f} s wall", file=sys.stderr, flush=True)

    samples = {label: [] for label, _, _ in variants}
    walls = {label: [] for label, _, _ in variants}
    loads = [os.getloadavg()[0]]
    rng = random.Random(17)
    for rep in range(reps):
        order = variants[:]
        rng.shuffle(order)
        for label, wasm, config in order:
            cpu_s, wall_s = run(wrt, prefix, wasm, config, cache)
            cpu_f, wall_f = run(wrt, events, wasm, config, cache)
            samples[label].append((cpu_f - cpu_s) / (n_full - n_small) * 1e6)
            walls[label].append((wall_f - wall_s) / (n_full - n_small) * 1e6)
            loads.append(os.getloadavg()[0])
        print(f"repetition {rep + 1}/{reps} done, load {loads[-1]:.1f}", file=sys.stderr, flush=True)

    result = {
        "events_full": n_full, "events_prefix": n_small, "reps": reps,
        "load_1min": loads,
        "variants": {
            label: {
                "cpu_us": samples[label],
                "wall_us": walls[label],
                "median_cpu_us": statistics.median(samples[label]),
                "median_wall_us": statistics.median(walls[label]),
                "cold_cpu_s": cold[label][0],
                "size": os.path.getsize(wasm),
            }
            for label, wasm, _ in variants
        },
    }
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
