#!/usr/bin/env python3
"""A drs cluster across network namespaces, configured by host names only.

Each node runs in its own network namespace (its own host, its own IP on a bridge) and
finds its peers by name through a per-namespace hosts file (/etc/netns/<ns>/hosts, which
`ip netns exec` mounts over /etc/hosts). The configuration holds no IP literal: every
node listens on 0.0.0.0 (`bind`) and is reached as nK.drs.test on the same ports.

Steps: sessions are written through every node; one node is killed (SIGKILL), its
namespace gets a new IP and every hosts file the new mapping, and it starts again under
the same name. The script measures the time until it is ready and serving, checks that
every session still holds its last value, then cuts one namespace off with nftables
(every packet dropped), checks the other two serve its sessions, and heals.

Needs root, iproute2 and (for the cut) nftables. Cleans up every namespace, hosts file
and process it made, also on failure. Exit status 0 when every check passed.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PREFIX = "drsmh"
SUBNET = "10.77.0"
HOST_IP = f"{SUBNET}.1"
NODES = ["n1", "n2", "n3"]


def sh(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


class Net:
    """The namespaces, the bridge and the hosts files."""

    def __init__(self):
        self.made = []
        self.ips = {n: f"{SUBNET}.{11 + i}" for i, n in enumerate(NODES)}

    def ns(self, node):
        return f"{PREFIX}-{node}"

    def up(self):
        self.down(quiet=True)
        sw = f"{PREFIX}-sw"
        sh("ip", "netns", "add", sw)
        self.made.append(sw)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        # The host's own leg, so this script reaches every node's HTTP port.
        sh("ip", "link", "add", f"{PREFIX}h", "type", "veth", "peer", "name", "sw0", "netns", sw)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", f"{PREFIX}h")
        sh("ip", "link", "set", f"{PREFIX}h", "up")
        sh("ip", "-n", sw, "link", "set", "sw0", "master", "br0", "up")
        for i, node in enumerate(NODES, start=1):
            ns = self.ns(node)
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "link", "add", f"{PREFIX}{i}", "netns", ns, "type", "veth", "peer", "name", f"sw{i}", "netns", sw)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", f"{PREFIX}{i}", "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{self.ips[node]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", sw, "link", "set", f"sw{i}", "master", "br0", "up")
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
        self.write_hosts()

    def write_hosts(self):
        text = "127.0.0.1 localhost\n" + "".join(f"{ip} {n}.drs.test\n" for n, ip in self.ips.items())
        for node in NODES:
            # Rewritten in place: a running namespace sees the file through a bind mount
            # of this very inode.
            with open(f"/etc/netns/{self.ns(node)}/hosts", "w") as f:
                f.write(text)

    def move(self, node, ip):
        """Gives `node` a new IP and every hosts file the new mapping."""
        ns = self.ns(node)
        sh("ip", "-n", ns, "addr", "flush", "dev", "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        self.ips[node] = ip
        self.write_hosts()

    def cut(self, node):
        ns = self.ns(node)
        sh("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "drscut")
        for hook in ("input", "output"):
            sh("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "drscut", hook,
               f"{{ type filter hook {hook} priority 0 ; policy accept ; }}")
            sh("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "drscut", hook, "iifname" if hook == "input" else "oifname", "eth0", "drop")

    def heal(self, node):
        sh("ip", "netns", "exec", self.ns(node), "nft", "delete", "table", "inet", "drscut", check=False)

    def down(self, quiet=False):
        names = [f"{PREFIX}-sw"] + [self.ns(n) for n in NODES]
        for ns in names:
            sh("ip", "netns", "del", ns, check=False)
            hosts = f"/etc/netns/{ns}/hosts"
            if os.path.exists(hosts):
                os.remove(hosts)
            if os.path.isdir(f"/etc/netns/{ns}"):
                os.rmdir(f"/etc/netns/{ns}")
        sh("ip", "link", "del", f"{PREFIX}h", check=False)


class Cluster:
    def __init__(self, drs, net, workdir, token):
        self.drs, self.net, self.workdir, self.token = drs, net, workdir, token
        self.procs = {}
        self.config = os.path.join(workdir, "cluster.yaml")
        key = sh(drs, "keygen").stdout.strip().splitlines()[-1].strip()
        with open(os.path.join(workdir, "cluster.key"), "w") as f:
            f.write(key + "\n")
        os.chmod(os.path.join(workdir, "cluster.key"), 0o600)
        nodes = "".join(f"  - {{name: {n}, address: {n}.drs.test, bind: 0.0.0.0}}\n" for n in NODES)
        with open(self.config, "w") as f:
            f.write("cluster: {id: multihost, keyFile: cluster.key}\n"
                    f"nodes:\n{nodes}"
                    "replication: {replicas: 1, mode: acknowledged}\n"
                    "membership: {probeInterval: 100ms, lease: 500ms}\n")
        check = subprocess.run([drs, "check-config", "--config", self.config], capture_output=True, text=True,
                               env=dict(os.environ, DRS_HTTP_TOKEN=token))
        if check.returncode != 0:
            raise RuntimeError(f"check-config refused the generated configuration: {check.stderr.strip()}")

    def start(self, node):
        log = open(os.path.join(self.workdir, f"{node}.log"), "a")
        env = dict(os.environ, DRS_HTTP_TOKEN=self.token, DRS_NODE_NAME=node)
        self.procs[node] = subprocess.Popen(
            ["ip", "netns", "exec", self.net.ns(node), self.drs, "node", "--config", self.config],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def kill(self, node):
        p = self.procs.pop(node, None)
        if p and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def stop_all(self):
        for node in list(self.procs):
            self.kill(node)

    def url(self, node, path):
        return f"http://{self.net.ips[node]}:8080{path}"

    def call(self, node, method, path, body=None, timeout=5):
        req = urllib.request.Request(self.url(node, path), data=body, method=method,
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)
        except (urllib.error.URLError, OSError) as e:
            return None, str(e).encode(), {}

    def wait(self, what, predicate, deadline=90):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {deadline} s waiting until {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drs", default="./.build/release/drs")
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--no-cut", action="store_true", help="skip the nftables cut")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("multihost: needs root (network namespaces)", file=sys.stderr)
        return 2
    drs = os.path.abspath(args.drs)
    # A test that gives up sends SIGTERM: clean up as on any other exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    net = Net()
    workdir = tempfile.mkdtemp(prefix="drs-multihost-")
    cluster = None
    try:
        net.up()
        cluster = Cluster(drs, net, workdir, token="multihost-token")
        for n in NODES:
            cluster.start(n)
        for n in NODES:
            cluster.wait(f"{n} is ready", lambda n=n: cluster.call(n, "GET", "/readyz")[0] == 200)
        print(f"three nodes ready in three namespaces ({', '.join(f'{n}={ip}' for n, ip in net.ips.items())}), configured by name only")

        sessions = {}
        for i in range(args.sessions):
            node = NODES[i % 3]
            status, _, headers = cluster.call(node, "POST", "/sessions", b"")
            assert status == 201, f"POST /sessions on {node}: {status}"
            sid = headers["Location"].rsplit("/", 1)[-1]
            value = f"v{i}".encode()
            status, body, _ = cluster.call(node, "PUT", f"/sessions/{sid}/attributes/a", value)
            assert status == 200, f"PUT on {node}: {status} {body!r}"
            sessions[sid] = value
        print(f"{len(sessions)} sessions written, a third through each node")

        # n1 dies and comes back under its name with a new IP.
        def n1_id(peer):
            status, body, _ = cluster.call(peer, "GET", "/cluster/members")
            return next((m["id"] for m in json.loads(body) if m["name"] == "n1"), None) if status == 200 else None
        old_id = n1_id("n2")
        new_ip = f"{SUBNET}.21"
        cluster.kill("n1")
        killed = time.monotonic()
        net.move("n1", new_ip)
        cluster.start("n1")
        started = time.monotonic()
        cluster.wait("n1 is ready at its new IP", lambda: cluster.call("n1", "GET", "/readyz")[0] == 200)
        ready = time.monotonic()

        def sees_new_n1(peer):
            # The new process (a new id), alive: not the old one still listed.
            status, body, _ = cluster.call(peer, "GET", "/cluster/members")
            if status != 200:
                return False
            return any(m["name"] == "n1" and m["state"] == "alive" and m["id"] not in (None, old_id) for m in json.loads(body))
        cluster.wait("n2 and n3 list the new n1 alive", lambda: sees_new_n1("n2") and sees_new_n1("n3"))
        joined = time.monotonic()
        wrong = {}
        for sid, value in sessions.items():
            got = {}
            cluster.wait(f"n1 serves session {sid}",
                         lambda: got.update(r=cluster.call("n1", "GET", f"/sessions/{sid}/attributes/a")) or got["r"][0] == 200)
            if got["r"][1] != value:
                wrong[sid] = (value, got["r"][1])
        served = time.monotonic()
        assert not wrong, f"sessions with a wrong value after the restart: {wrong}"
        print(f"n1 restarted as {new_ip}: ready {ready - started:.2f} s after its start "
              f"({ready - killed:.2f} s after the kill), listed alive by both peers after {joined - started:.2f} s, "
              f"all {len(sessions)} sessions served by it with their last values after {served - started:.2f} s")

        if not args.no_cut:
            if subprocess.run(["which", "nft"], capture_output=True).returncode != 0:
                print("nft is not installed: the cut is skipped", file=sys.stderr)
            else:
                net.cut("n3")
                cut = time.monotonic()
                for sid, value in sessions.items():
                    got = {}
                    cluster.wait(f"n2 serves session {sid} while n3 is cut off",
                                 lambda: got.update(r=cluster.call("n2", "GET", f"/sessions/{sid}/attributes/a")) or got["r"][0] == 200)
                    assert got["r"][1] == value, f"{sid}: expected {value!r}, found {got['r'][1]!r}"
                print(f"n3 cut off (nftables drops every packet of its namespace): n2 served all {len(sessions)} sessions "
                      f"with their last values after {time.monotonic() - cut:.2f} s")
                net.heal("n3")
                cluster.wait("n3 is ready again after the heal", lambda: cluster.call("n3", "GET", "/readyz")[0] == 200)
                print("healed: n3 ready again")
        print("multihost: passed")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    except (AssertionError, RuntimeError) as e:
        print(f"multihost: FAILED: {e}", file=sys.stderr)
        for n in NODES:
            path = os.path.join(workdir, f"{n}.log")
            if os.path.exists(path):
                with open(path) as f:
                    tail = f.read().splitlines()[-15:]
                print(f"--- last lines of {n}.log ---\n" + "\n".join(tail), file=sys.stderr)
        print(f"logs and configuration kept in {workdir}", file=sys.stderr)
        return 1
    finally:
        if cluster:
            cluster.stop_all()
        net.down()


if __name__ == "__main__":
    sys.exit(main())
