"""Choosing a policy: Policy.below() of the shortest idle timeout on the path."""

import keepalive

paths = {
    "Azure Load Balancer / NAT Gateway (4 min)": 240,
    "AWS NAT Gateway, AWS NLB (350 s)": 350,
    "kube-proxy in IPVS mode (900 s)": 900,
    "GCP Cloud NAT (1200 s)": 1200,
    "conntrack under kube-proxy (24 h)": 86400,
}
for name, timeout in paths.items():
    policy = keepalive.Policy.below(timeout)
    print(f"{name:42} {policy}")
    # Even if the first probe is lost, the second one reaches the middlebox before it forgets the connection.
    assert policy.idle + policy.interval < timeout

# Your own numbers: keyword-only, validated, frozen.
custom = keepalive.Policy(idle=30, interval=5, count=3)
print("custom:", custom, "-> TCP_USER_TIMEOUT", custom.user_timeout_ms, "ms")
try:
    keepalive.Policy(idle=0)
except keepalive.InvalidPolicy as exc:  # also a ValueError
    print("invalid:", exc)
