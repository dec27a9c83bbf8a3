#!/usr/bin/env python3
"""One line per drill report: `scripts/drill-summary.py drill-reports/*.json` prints a
Markdown table of what each drill lost, how long detection, promotion and full
replication took, and the worst second's p99 latency."""
import json, sys

def ms(v):
    return "-" if v is None else f"{v:.0f}"

print("| config | scenario | repair | writes acked (replicated) | failed / indeterminate | acked lost (oldest age at fault ms) | sessions lost | stale reads | detect ms | promote ms | full repl ms | lag p99 before ms | worst p99 ms | violations |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    r = json.load(open(path))
    w = r["writes"]
    lost = r["lostWrites"]
    oldest = max((x["ageAtFaultMs"] for x in lost), default=None)
    worst = max((s["p99Ms"] for s in r["perSecond"]), default=0)
    lag = r.get("lagMsP99AtFault")
    print(f"| {r['config'].split('/')[-1]} | {r['scenario']} | {'on' if r.get('repair', True) else 'off'} "
          f"| {w['acknowledged']} ({w['acknowledgedReplicated']}) | {w['failed']} / {w['indeterminate']} "
          f"| {r['acknowledgedWritesLost']}{'' if oldest is None else f' ({oldest:.0f})'} | {r['sessionsLost']} | {r['staleReads']} "
          f"| {ms(r['timeToDetectMs'])} | {ms(r['timeToPromoteMs'])} | {ms(r['timeToFullReplicationMs'])} "
          f"| {'-' if lag is None else f'{lag:.1f}'} | {worst:.0f} | {len(r.get('violations', []))} |")
