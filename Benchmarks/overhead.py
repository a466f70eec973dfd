"""What one embedded prediction costs the server: its CPU time and context switches per
`Prefer: wait` prediction of `hello`, with the p50 latency, for two `lathe` binaries side by side
(a baseline build and the current one), taking turns so that drift of the machine falls on both.

The CPU is the `lathe serve` process's (all its threads; the model process is counted apart),
read from /proc before and after each round; context switches are summed over its threads.

Usage: python3 Benchmarks/overhead.py --baseline /path/to/old/lathe [--candidate .build-release/release/lathe]
           [--requests 1500] [--rounds 3]
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import predictions  # noqa: E402  (start_lathe, push, post)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid):
    total = 0
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            status = open(f"/proc/{pid}/task/{thread}/status").read()
        except OSError:
            continue
        total += int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        total += int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
    return total


def children(pid):
    found = []
    for line in os.popen(f"pgrep -P {pid}").read().split():
        found += [int(line)] + children(int(line))
    return found


def round_of(binary, requests):
    predictions.LATHE = binary
    scratch = tempfile.mkdtemp(prefix="lathe-bench-overhead-")
    process, url, token, _ = predictions.start_lathe(scratch, "--max-instances", "1", "--rate-limit-creates", "1000000")
    try:
        version = predictions.push("hello", url, token, os.path.join(scratch, "home"))
        target = (f"{url}/v1/predictions", {"version": version, "input": {"text": "bench"}},
                  {"Authorization": f"Bearer {token}", "Prefer": "wait"})
        for _ in range(200):
            predictions.post(*target)  # warm
        model = children(process.pid)
        cpu, model_cpu, switches = cpu_seconds(process.pid), sum(cpu_seconds(pid) for pid in model), context_switches(process.pid)
        latencies = []
        for _ in range(requests):
            seconds, answer = predictions.post(*target)
            assert answer["output"] == "Hello, bench!", answer
            latencies.append(seconds)
        return {
            "p50": statistics.median(latencies),
            "cpu": (cpu_seconds(process.pid) - cpu) / requests,
            "model": (sum(cpu_seconds(pid) for pid in model) - model_cpu) / requests,
            "switches": (context_switches(process.pid) - switches) / requests,
        }
    finally:
        process.terminate()
        process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--candidate", default=predictions.LATHE)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = {"baseline": [], "candidate": []}
    for _ in range(args.rounds):
        for name in results:
            results[name].append(round_of(getattr(args, name), args.requests))
    medians = {name: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]} for name, rounds in results.items()}
    base, cand = medians["baseline"], medians["candidate"]
    print(f"hello, {args.requests} sequential Prefer: wait predictions per round, {args.rounds} rounds each, medians")
    print(f"  p50 latency: baseline {base['p50'] * 1000:.2f} ms, candidate {cand['p50'] * 1000:.2f} ms, ratio {cand['p50'] / base['p50']:.2f}x")
    print(f"  server CPU per prediction: baseline {base['cpu'] * 1e6:.0f} us, candidate {cand['cpu'] * 1e6:.0f} us, ratio {cand['cpu'] / base['cpu']:.2f}x")
    print(f"  context switches per prediction: baseline {base['switches']:.1f}, candidate {cand['switches']:.1f}, "
          f"ratio {cand['switches'] / base['switches']:.2f}x")
    print(f"  model process CPU per prediction: baseline {base['model'] * 1e6:.0f} us, candidate {cand['model'] * 1e6:.0f} us")


if __name__ == "__main__":
    main()
