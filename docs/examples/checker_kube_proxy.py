"""kube-proxy's configuration as a source: in IPVS mode an idle connection is forgotten after 900 s.

JSON needs nothing extra; YAML (kubeadm's ConfigMap key config.conf) needs ``pip install 'tcp-keepalive[yaml]'``.
"""

import json
import tempfile
from pathlib import Path

import keepalive

config = {
    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
    "kind": "KubeProxyConfiguration",
    "mode": "ipvs",
    "ipvs": {"tcpTimeout": "0s"},  # 0: the kernel's IPVS timeout, 900 s
    "conntrack": {"tcpEstablishedTimeout": "24h0m0s", "tcpCloseWaitTimeout": "1h0m0s", "tcpBeLiberal": True},
}

with tempfile.TemporaryDirectory() as directory:
    path = Path(directory, "kube-proxy.json")
    path.write_text(json.dumps(config))
    report = keepalive.check(kube_proxy_config=path, policy=keepalive.Policy(idle=60, interval=10, count=5))

for source in report.sources:
    if source.name.startswith("kube-proxy"):
        print(f"{source.name:45} {source.value!s:10} {source.note or ''}")
print(f"path timeout {report.path_timeout:g} s from {report.path_timeout_origin}")
print("recommended:", report.recommended_policy.to_env())

assert report.path_timeout is not None
assert report.path_timeout <= 900
