#!/usr/bin/env python3
"""`make demo`: a local cluster doing real replication and failover, through the HTTP API.

Starts every node of a config as its own `drs node` process (`drs cluster up --detach`),
creates sessions on the first node, reads them through another node (which takes them
over: ownership follows requests), SIGKILLs the node that owns them, reads every session
again through a survivor, prints what happened and stops the cluster.

usage: scripts/demo.py [--config FILE] [--drs PATH] [--sessions N]
"""
import argparse, base64, json, os, re, signal, subprocess, sys, tempfile, time, urllib.error, urllib.request


def nodes_of(config):
    text = open(config).read()
    return [dict(name=m.group(1), address=m.group(2), http=int(m.group(3)))
            for m in re.finditer(r"name: ([a-z0-9-]+), address: ([\d.]+), httpPort: (\d+)", text)]


def call(method, url, body=None, retry_for=10.0):
    """One HTTP call; retries 503 answers (Retry-After) for up to `retry_for` seconds."""
    deadline = time.monotonic() + retry_for
    while True:
        req = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                data = r.read()
                return r.status, dict(r.headers), data
        except urllib.error.HTTPError as e:
            data = e.read()
            if e.code == 503 and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            return e.code, dict(e.headers), data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="cluster-configs/local-3.yaml")
    ap.add_argument("--drs", default=".build/release/drs")
    ap.add_argument("--sessions", type=int, default=6)
    args = ap.parse_args()
    nodes = nodes_of(args.config)
    if len(nodes) < 3:
        sys.exit("demo: the config needs at least 3 nodes")
    url = {n["name"]: f"http://{n['address']}:{n['http']}" for n in nodes}
    state = tempfile.mkdtemp(prefix="drs-demo-")
    first, reader, third = nodes[0]["name"], nodes[1]["name"], nodes[2]["name"]
    print(f"1. starting every node of {args.config} as its own process (drs cluster up --detach)")
    up = subprocess.run([args.drs, "cluster", "up", "--config", args.config, "--detach", "--wait", "60s", "--state-dir", state],
                        capture_output=True, text=True)
    print("   " + up.stdout.strip().replace("\n", "\n   "))
    if up.returncode != 0:
        print(up.stderr)
        sys.exit(1)
    failures = 0
    try:
        print(f"\n2. creating {args.sessions} sessions on {first} and putting a cart in each (POST, then PUT)")
        carts = {}
        for i in range(args.sessions):
            cart = f"apples={i + 1}".encode()
            status, headers, body = call("POST", url[first] + "/sessions",
                                         json.dumps({"attributes": {"user": base64.b64encode(f"user-{i}".encode()).decode()}}).encode())
            created = json.loads(body)
            sid = created["id"]
            status, headers, _ = call("PUT", f"{url[first]}/sessions/{sid}/attributes/cart", cart)
            carts[sid] = cart
            held = json.loads(call("GET", f"{url[first]}/cluster/sessions/{sid}")[2])
            print(f"   {sid}  owner {created['owner']}  epoch {created['epoch']}  backups {held['replicaSet']}  PUT cart -> {status}")
        time.sleep(0.3)
        print(f"\n3. reading each session through {reader}: with affinity sticky the session moves to the node asked")
        for sid in carts:
            status, headers, body = call("GET", f"{url[reader]}/sessions/{sid}")
            s = json.loads(body)
            got = base64.b64decode(s["attributes"]["cart"])
            print(f"   GET on {reader}: {status}, X-DRS-Owner {headers.get('X-DRS-Owner')}, epoch {s['epoch']}, cart {got.decode()}")
            failures += got != carts[sid]
        owners = {}
        for sid in carts:
            for n in nodes:
                held = json.loads(call("GET", f"{url[n['name']]}/cluster/sessions/{sid}")[2])
                if held["role"] == "owner":
                    owners[sid] = n["name"]
        victim = max(set(owners.values()), key=list(owners.values()).count)
        pid = int(open(os.path.join(state, victim + ".pid")).read())
        print(f"\n4. killing {victim} (SIGKILL, pid {pid}), the owner of {list(owners.values()).count(victim)} of the sessions")
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        survivor = next(n["name"] for n in nodes if n["name"] != victim)
        while time.monotonic() - t0 < 30:
            members = json.loads(call("GET", url[survivor] + "/cluster/members")[2])
            if any(m["name"] == victim and m["state"] == "dead" for m in members):
                break
            time.sleep(0.01)
        print(f"   {survivor} lists {victim} dead after {(time.monotonic() - t0) * 1000:.0f} ms")
        print(f"\n5. reading every session again through {survivor}")
        lost = 0
        for sid, cart in carts.items():
            status, headers, body = call("GET", f"{url[survivor]}/sessions/{sid}")
            if status != 200:
                print(f"   {sid}: {status} {body.decode(errors='replace')}")
                lost += 1
                continue
            s = json.loads(body)
            got = base64.b64decode(s["attributes"]["cart"])
            ok = "same cart" if got == cart else f"DIFFERENT cart {got!r}"
            lost += got != cart
            print(f"   {sid}: {status} from {headers.get('X-DRS-Owner')}, epoch {s['epoch']}, version {s['version']}, {ok}")
        print(f"   {time.monotonic() - t0:.2f} s after the kill, every read done")
        failures += lost
        print("\n6. cluster status")
        status = subprocess.run([args.drs, "cluster", "status", "--config", args.config, "--state-dir", state], capture_output=True, text=True)
        print("   " + (status.stdout or status.stderr).strip().replace("\n", "\n   "))
        print(f"\nwhat happened: {len(carts)} sessions created on {first}, taken over by {reader} on read, "
              f"{victim} killed, {len(carts) - lost} of {len(carts)} read back with their last cart, {lost} lost")
    finally:
        down = subprocess.run([args.drs, "cluster", "down", "--config", args.config, "--state-dir", state], capture_output=True, text=True)
        print("\n7. " + (down.stdout.strip() or down.stderr.strip()))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
