"""Idle timeouts of well-known middleboxes, by preset name (``--middlebox NAME`` / ``KEEPALIVE_MIDDLEBOX``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["MIDDLEBOXES", "MIDDLEBOX_NOTES", "parse_middleboxes"]

_PRESETS: Final = {
    # name: (idle timeout in seconds, what it is and what it does when it forgets)
    "aws-nat-gateway": (350, "AWS NAT Gateway: 350 s idle timeout, then a RST on the next packet"),
    "aws-nlb": (350, "AWS Network Load Balancer: 350 s TCP idle timeout by default (configurable 60-6000 s)"),
    "aws-gwlb": (350, "AWS Gateway Load Balancer: 350 s TCP idle timeout"),
    "azure-lb": (240, "Azure Load Balancer: 4 min idle timeout by default, silent drop"),
    "azure-nat-gateway": (240, "Azure NAT Gateway: 4 min idle timeout by default, silent drop"),
    "gcp-cloud-nat": (1200, "GCP Cloud NAT: tcpEstablishedIdleTimeoutSec 1200 s by default"),
    "ipvs": (900, "Linux IPVS (kube-proxy --proxy-mode=ipvs): the kernel's 900 s TCP timeout"),
    "calico-ebpf": (3600, "Calico eBPF data plane: established TCP conntrack timeout 1 h"),
    "cilium": (8000, "Cilium eBPF: regular/service TCP conntrack timeout 8000 s (2h13m20s)"),
    "kube-proxy": (86400, "kube-proxy's default --conntrack-tcp-timeout-established (24 h)"),
}

#: Preset name -> idle timeout in seconds. ``keepalive.MIDDLEBOXES["aws-nat-gateway"] == 350``.
MIDDLEBOXES: Final[Mapping[str, int]] = MappingProxyType({name: t for name, (t, _) in _PRESETS.items()})
#: Preset name -> one line about the device (for docs and ``keepalive check --list-middleboxes``).
MIDDLEBOX_NOTES: Final[Mapping[str, str]] = MappingProxyType({name: n for name, (_, n) in _PRESETS.items()})


def parse_middleboxes(text: str) -> tuple[list[str], list[str]]:
    """Split ``"aws-nat-gateway, azure-lb"`` into (known preset names, unknown names). Case-insensitive;
    ``_`` and spaces count as ``-``."""
    known: list[str] = []
    unknown: list[str] = []
    for part in text.split(","):
        name = "-".join(part.strip().lower().replace("_", "-").split())
        if not name:
            continue
        target = known if name in MIDDLEBOXES else unknown
        if name not in target:
            target.append(name)
    return known, unknown
