"""Read a node's values through another proc root, as a DaemonSet does with the host's /proc at /host/proc.

Here the "host" is a small proc tree made in a temporary directory: a node whose kube-proxy set the conntrack
established timeout to 1 h and whose conntrack has counted invalid packets.
"""

import json
import os
import tempfile
from pathlib import Path

import keepalive

NODE = {
    "net/netfilter/nf_conntrack_tcp_timeout_established": 3600,
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait": 3600,
    "net/netfilter/nf_conntrack_tcp_be_liberal": 0,
    "net/netfilter/nf_conntrack_tcp_loose": 1,
    "net/netfilter/nf_conntrack_count": 5120,
    "net/netfilter/nf_conntrack_max": 262144,
    "net/netfilter/nf_conntrack_buckets": 65536,
    "net/ipv4/tcp_keepalive_time": 7200,
    "net/ipv4/tcp_keepalive_intvl": 75,
    "net/ipv4/tcp_keepalive_probes": 9,
}
STAT = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop\n"
CPU_ROWS = [
    "00001400  00000000 00000000 00000000 0000002a 00000000 00000000 00000000 00000000 00000000 00000000 00000000",
    "00001400  00000000 00000000 00000000 00000011 00000000 00000000 00000000 00000000 00000000 00000000 00000000",
]

with tempfile.TemporaryDirectory() as host_proc:
    for name, value in NODE.items():
        path = Path(host_proc, "sys", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
        if name.endswith(("_max", "_buckets")):
            os.chmod(path, 0o644)  # writable: the initial (node's) network namespace
    stat = Path(host_proc, "net", "stat", "nf_conntrack")
    stat.parent.mkdir(parents=True)
    stat.write_text(STAT + "\n".join(CPU_ROWS) + "\n")

    report = keepalive.check(proc_root=host_proc, policy=keepalive.Policy(idle=60, interval=10, count=5))
    data = json.loads(report.to_json())

print(json.dumps({k: data[k] for k in ("path_timeout", "recommended_policy", "exit_code")}, indent=2))
for finding in data["findings"]:
    print(finding["severity"], finding["code"])

assert data["path_timeout"] == 3600
assert report.conntrack["invalid"] == 0x2A + 0x11  # summed over the CPUs
assert "conntrack-invalid-packets" in {f["code"] for f in data["findings"]}
