#!/usr/bin/env python3
"""Loopback failover timings with real `drs` processes (docs/PERFORMANCE.md, workload 3).

Each trial starts the three nodes of a config (`drs cluster up --detach`), optionally
creates SESSIONS sessions on the victim over HTTP, SIGKILLs the victim and polls the
survivors every 2 ms: when each lists the victim `dead` in /cluster/members, and when the
survivors' primaries (/cluster/status) cover every session the victim owned.

usage: scripts/failover-timing.py [--trials N] [--sessions N] [--config FILE] [--drs PATH]
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

def get(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())

def post(url, body=b""):
    req = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status

def nodes_of(config):
    import re
    text = open(config).read()
    return [dict(name=m.group(1), address=m.group(2), http=int(m.group(3)))
            for m in re.finditer(r"name: (\w+), address: ([\d.]+), httpPort: (\d+)", text)]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=0)
    ap.add_argument("--config", default="cluster-configs/local-3.yaml")
    ap.add_argument("--drs", default=".build/release/drs")
    args = ap.parse_args()
    nodes = nodes_of(args.config)
    victim, survivors = nodes[-1], nodes[:-1]
    state = tempfile.mkdtemp(prefix="drs-failover-")
    detect, promote = [], []
    for trial in range(args.trials):
        up = subprocess.run([args.drs, "cluster", "up", "--config", args.config, "--detach", "--wait", "60s", "--state-dir", state],
                            capture_output=True, text=True)
        if up.returncode != 0:
            print(up.stdout, up.stderr); sys.exit(1)
        try:
            base = lambda n: f"http://{n['address']}:{n['http']}"
            if args.sessions:
                with ThreadPoolExecutor(32) as pool:
                    list(pool.map(lambda _: post(base(victim) + "/sessions"), range(args.sessions)))
                time.sleep(1)
            owned = get(base(victim) + "/cluster/status")["primaries"]
            before = sum(get(base(n) + "/cluster/status")["primaries"] for n in survivors)
            pid = int(open(os.path.join(state, victim["name"] + ".pid")).read())
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            dead_at, promoted_at = {}, None
            while time.monotonic() - t0 < 30 and (len(dead_at) < len(survivors) or promoted_at is None):
                now = time.monotonic() - t0
                for n in survivors:
                    if n["name"] not in dead_at:
                        members = get(base(n) + "/cluster/members")
                        if any(m["name"] == victim["name"] and m["state"] == "dead" for m in members):
                            dead_at[n["name"]] = now
                if promoted_at is None:
                    total = sum(get(base(n) + "/cluster/status")["primaries"] for n in survivors)
                    if total - before >= owned:
                        promoted_at = now
                time.sleep(0.002)
            detect += [v * 1000 for v in dead_at.values()]
            if promoted_at is not None: promote.append(promoted_at * 1000)
            print(f"trial {trial + 1}: dead on {sorted((k, round(v * 1000)) for k, v in dead_at.items())} ms; "
                  f"{owned} sessions served by new owners after {round(promoted_at * 1000) if promoted_at else 'n/a'} ms", flush=True)
        finally:
            subprocess.run([args.drs, "cluster", "down", "--config", args.config, "--state-dir", state], capture_output=True)
    if detect:
        s = sorted(detect)
        print(f"crash -> dead: median {statistics.median(s):.0f} ms, max {s[-1]:.0f} ms over {len(s)} observations")
    if promote:
        print(f"crash -> every session promoted: median {statistics.median(promote):.0f} ms over {len(promote)} trials")

if __name__ == "__main__":
    main()
