"""The gateway under parents and visitors (issue 15): req/s, p50 and p99 of
the parent's main read and two pages, at 1, 8, 32 and 64 clients.

    .venv/bin/python bench/gateway_load.py                              # 100,000 children
    .venv/bin/python bench/gateway_load.py --children 5000 --seconds 8  # a quick look

The whole of Kezek runs as `kezek run --postgres` runs it (bench/system.py:
PostgreSQL, Kafka, the Temporal dev server, the five services, relays,
consumers, the worker, on free ports in a temporary folder; only its own
processes are stopped). A queue of `--children` children comes in through
`kezek import` of a generated export of the old portal (bench/queue_data.py),
the system takes in what that sets off (the built databases are kept as a
snapshot and later runs of this size and seed start on them, as
bench/distribution_day.py does: `--fresh`, `--no-snapshot`, `--snapshot`),
then `--parents` parents are signed
in through the gateway (real bearer tokens and session cookies).

Then, for each endpoint and each concurrency, locust (bench/load.py, a
process of its own) runs `--seconds` after `--warmup` with that many users,
each sending its next request when the last is answered:

- `me`: GET /api/v1/me with a parent's bearer (a parent's app, JSON);
- `cabinet`: GET /cabinet with the parent's session cookie (the page);
- `queue`: GET /queue/<kindergarten>?cohort=&language= (the public queue page);
- `register`: a parent's whole application through the JSON API, the e-mail
  code read from the development mailbox (bench/load.py): submissions per
  second, and the time from the new draft to the accepted submission.

Rate limits are the production defaults (300 a minute per signed-in parent,
300 a minute per address), with the gateway behind a trusted proxy so that
every client is counted under its own address and each request is one of
many families: a 429 would be counted as an error, not hidden.

Beside it, the CPU of every part of the system (each `kezek serve`,
consumer, relay, worker, PostgreSQL, Kafka, Temporal, from /proc, its
processes summed) per answer: per request, or per submission for
`register` (`cpu_ms_per_answer`), and the same less what each part spends
at rest (`cpu_ms_per_answer_beyond_idle`: measured for `--idle-seconds`
before the runs; pollers, heartbeats and the supervisor cost about a third
of a core with nobody using the system), to tell which part a request costs.

The gateway's own CPU time per request is measured beside them (the CPU
seconds of the `kezek serve gateway` process and its workers, from
/proc/PID/stat, over the whole locust run, divided by every request it
answered, warm-up included): it moves far less than req/s when other work
shares the machine.

Prints a table (req/s, p50, p99, errors, gateway CPU ms per request, the
1-minute load average) and
writes bench/results/gateway_load-<time>.json and .png (latency against
concurrency); the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import load as loadgen  # noqa: E402
from queue_data import (  # noqa: E402
    Watch, built_queue_of, load, public_pools, say, settle, sign_in_parents, snapshot_options,
)
from system import BenchFolder, System  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TICK = os.sysconf("SC_CLK_TCK")
# The service a page of the gateway asks, whose CPU per request is measured beside the gateway's.
BEHIND = {"queue": "queue"}


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: its parent's pid and its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[int(entry.name)] = (int(stat.rpartition(")")[2].split()[1]), cmd)
    return found


def service_pids(root: int, service: str) -> list[int]:
    """The processes of `kezek serve <service>` under the supervisor `root`:
    the command's own and its uvicorn workers."""
    procs = _processes()
    _children, below = _tree(procs)
    return [p for pid in below(root) if f"serve {service}" in procs[pid][1] for p in below(pid)]


def _tree(procs: dict[int, tuple[int, str]]):
    """The children of each process among `procs`, and `below(pid)`: the
    process and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)

    def below(pid: int) -> list[int]:
        return [pid] + [d for c in children.get(pid, []) for d in below(c)]

    return children, below


def _part(cmd: str) -> str:
    """The part of the system a process is, from its command line."""
    words = cmd.split()
    if "serve" in words and words.index("serve") + 1 < len(words):
        return words[words.index("serve") + 1]
    if "consume" in words:
        option = {flag: value for flag, value in zip(words, words[1:]) if flag.startswith("--")}
        kind = "jobs" if option.get("--only") == "jobs" else "consume"
        return f"{kind} {option['--service']}" if "--service" in option else kind
    for name in ("relay", "worker", "postgres", "kafka", "temporal", "mailbox", "sms"):
        if name in cmd.lower():
            return name
    return words[0].rsplit("/", 1)[-1] if words else "?"


def parts_cpu(root: int, state: Path | None = None) -> dict[str, float]:
    """CPU seconds so far of every process under the supervisor `root`,
    summed per part of the system (`registration`, `consume gateway`,
    `relay`, `kafka`, ...): a process belongs to the part of its nearest
    ancestor below the supervisor. PostgreSQL runs detached from it: its
    server (the one whose command line names `state`) and its backends are
    `postgres`."""
    procs = _processes()
    children, below = _tree(procs)
    out: dict[str, float] = {}
    for top in children.get(root, []):
        name = _part(procs[top][1])
        out[name] = out.get(name, 0.0) + cpu_seconds(below(top))
    out["supervisor"] = cpu_seconds([root])
    if state is not None:
        for pid, (_, cmd) in procs.items():
            if "postgres" in cmd and f"-D {state}" in cmd:
                out["postgres"] = out.get("postgres", 0.0) + cpu_seconds(below(pid))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])          # utime, stime
    return total / TICK


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for endpoint, rows in results.items():
        xs = [r["users"] for r in rows]
        ax.plot(xs, [r["p50_ms"] for r in rows], marker="o", label=f"{endpoint} p50")
        ax.plot(xs, [r["p99_ms"] for r in rows], marker="x", linestyle="--", label=f"{endpoint} p99")
        bx.plot(xs, [r["per_second"] for r in rows], marker="o", label=endpoint)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("latency, ms")
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    bx.set_xscale("log", base=2)
    bx.set_xlabel("concurrent clients")
    bx.set_ylabel("requests per second")
    bx.axhline(400, color="grey", linewidth=0.8, linestyle=":")
    bx.legend(fontsize=7)
    bx.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--children", type=int, default=100_000)
    ap.add_argument("--kindergartens", type=int, default=0, help="default: one per 170 children")
    ap.add_argument("--parents", type=int, default=200,
                    help="parents signed in, their tokens shared out (each may read 300 times a minute, as in production)")
    ap.add_argument("--clients", default="1,8,32,64", help="concurrencies, comma-separated")
    ap.add_argument("--endpoints", default=",".join(loadgen.ENDPOINTS))
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--idle-seconds", type=float, default=10,
                    help="seconds the system's CPU at rest is measured before the runs (taken off theirs)")
    ap.add_argument("--gateway-workers", type=int, default=1,
                    help="worker processes of the gateway (KEZEK_GATEWAY_WORKERS)")
    snapshot_options(ap)
    args = ap.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    endpoints = [e for e in args.endpoints.split(",") if e]
    kgs = args.kindergartens or max(20, args.children // 170)

    folder = BenchFolder(args.dir, "kezek-gwload-")
    base = folder.path
    figures: dict = {"benchmark": "gateway_load", "children": args.children, "kindergartens": kgs,
                     "parents": args.parents, "seconds": args.seconds, "gateway_workers": args.gateway_workers, "cpus": os.cpu_count(),
                     "when": time.strftime("%Y-%m-%d %H:%M"), "load_start": load()}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # stop the system on the way out
    kezek = System(base / "kezek", log=say, env={"KEZEK_GATEWAY_WORKERS": str(args.gateway_workers)})
    watch = None
    results: dict[str, list[dict]] = {}
    try:
        figures["queue"] = built_queue_of(kezek, args, kgs)
        watch = Watch(kezek)
        t = time.monotonic()
        # The public page is read by anonymous visitors: no parent signs in for it alone.
        signed = [e for e in endpoints if e in ("me", "cabinet")]
        tokens = sign_in_parents(kezek, watch, args.parents, args.seed) if signed else []
        if signed and not tokens:
            raise SystemExit("no parent could be signed in")
        figures["sign_in_s"] = round(time.monotonic() - t, 1)
        spec = {"tokens": tokens, "pools": public_pools(watch),
                "mailbox": str(kezek.state / "mailbox" / "messages.jsonl")}
        settle(watch, 600, "after signing in")
        say(f"{len(tokens)} parents signed in, {len(spec['pools'])} public pools; load {load()}")
        # What the system spends with nobody using it (pollers, heartbeats,
        # the supervisor), per part and second: taken off each run's CPU.
        t, at_rest = time.monotonic(), parts_cpu(kezek.proc.pid, kezek.state)
        time.sleep(args.idle_seconds)
        rested = parts_cpu(kezek.proc.pid, kezek.state)
        idle = {k: (rested[k] - at_rest.get(k, 0.0)) / (time.monotonic() - t) for k in rested}
        figures["idle_cpu_ms_per_second"] = {k: round(v * 1000, 1) for k, v in sorted(idle.items(), key=lambda kv: -kv[1])}
        say(f"at rest, CPU ms a second by part (load {load()}): "
            + ", ".join(f"{k} {v}" for k, v in figures["idle_cpu_ms_per_second"].items() if v >= 0.5))
        for endpoint in endpoints:
            for users in clients:
                before = load()
                pids = service_pids(kezek.proc.pid, "gateway")
                behind = service_pids(kezek.proc.pid, BEHIND[endpoint]) if endpoint in BEHIND else []
                cpu, cpu_behind = cpu_seconds(pids), cpu_seconds(behind)
                every, t = parts_cpu(kezek.proc.pid, kezek.state), time.monotonic()
                run = loadgen.start(kezek.url("gateway"), endpoint, spec, users=users, seconds=args.seconds,
                                    warmup=args.warmup)
                r = run.wait()
                cpu, cpu_behind = cpu_seconds(pids) - cpu, cpu_seconds(behind) - cpu_behind
                after, elapsed = parts_cpu(kezek.proc.pid, kezek.state), time.monotonic() - t
                answered = max(1, len(run.samples))   # warm-up included, as the CPU: submissions for `register`
                spent = {k: after[k] - every.get(k, 0.0) for k in after}
                r["cpu_ms_per_answer"] = {k: round(v * 1000 / answered, 1)
                                          for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.005}
                beyond = {k: v - idle.get(k, 0.0) * elapsed for k, v in spent.items()}
                r["cpu_ms_per_answer_beyond_idle"] = {k: round(v * 1000 / answered, 1)
                                                      for k, v in sorted(beyond.items(), key=lambda kv: -kv[1])}
                r["cpu_ms_per_answer_beyond_idle_total"] = round(sum(beyond.values()) * 1000 / answered, 1)
                r.update(load_before=before, load_after=load(), gateway_cpu_s=round(cpu, 2),
                         gateway_cpu_ms_per_request=round(cpu * 1000 / max(1, run.http_requests), 2))
                if behind:
                    r[f"{BEHIND[endpoint]}_cpu_ms_per_request"] = round(cpu_behind * 1000 / max(1, run.http_requests), 2)
                r.pop("statuses", None) if not r["errors"] else None
                results.setdefault(endpoint, []).append(r)
                also = (f", {BEHIND[endpoint]} {r[f'{BEHIND[endpoint]}_cpu_ms_per_request']} ms"
                        if endpoint in BEHIND else "")
                say(f"{endpoint:8} {users:3} clients: {r['per_second']} req/s (ok {r['ok_per_second']})  "
                    f"p50 {r['p50_ms']} ms  "
                    f"p99 {r['p99_ms']} ms  errors {r['errors']}  gateway CPU {r['gateway_cpu_ms_per_request']} ms/request"
                    f"{also}  load {before}-{r['load_after']}")
                if r.get("statuses", {}).get("429"):
                    say(f"    {r['statuses']['429']} answered 429: the families' allowance (300 a minute each) "
                        f"ran out; sign in more with --parents (now {args.parents})")
                say("    CPU ms per " + ("submission" if endpoint == "register" else "request")
                    + f" beyond the idle system's, {r['cpu_ms_per_answer_beyond_idle_total']} in all: "
                    + ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_answer_beyond_idle"].items() if abs(v) >= 0.5))
    finally:
        if watch is not None:
            watch.close()
        kezek.stop()
        folder.close()
    figures.update(results=results, load_end=load())
    print(f"\n{'endpoint':<10} {'clients':>7} {'req/s':>8} {'ok/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'CPU ms':>7}  load")
    for endpoint, rows in results.items():
        for r in rows:
            print(f"{endpoint:<10} {r['users']:>7} {r['per_second']!s:>8} {r['ok_per_second']!s:>8} "
                  f"{r['p50_ms']!s:>8} {r['p99_ms']!s:>8} "
                  f"{r['errors']:>7} {r['gateway_cpu_ms_per_request']!s:>7}  {r['load_before']}-{r['load_after']}")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"gateway_load-{stamp}.json").write_text(json.dumps(figures, indent=1))
    plot(results, RESULTS / f"gateway_load-{stamp}.png",
         f"gateway at {args.children:,} children ({figures['when']}, load {figures['load_start']}-"
         f"{figures['load_end']}, 2 cores shared)")
    figures["plot"] = f"bench/results/gateway_load-{stamp}.png"
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
