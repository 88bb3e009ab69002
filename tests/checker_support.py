"""Fake proc trees for the checker tests: real files under tmp_path, laid out like /proc."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: A kernel 6.x header (columns differ between kernels: the parser goes by the header).
NF_HEADER: Final = (
    "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop "
    "icmp_error  expect_new expect_create expect_delete search_restart"
)
#: The 4.x/5.x header, with searched / delete_list instead of clashres / chainlength.
NF_HEADER_OLD: Final = (
    "entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop "
    "icmp_error  expect_new expect_create expect_delete search_restart"
)

NODE_SYSCTLS: Final = {
    "net.netfilter.nf_conntrack_tcp_timeout_established": 86400,
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": 3600,
    "net.netfilter.nf_conntrack_tcp_be_liberal": 0,
    "net.netfilter.nf_conntrack_tcp_loose": 1,
    "net.netfilter.nf_conntrack_count": 1000,
    "net.netfilter.nf_conntrack_max": 262144,
    "net.netfilter.nf_conntrack_buckets": 65536,
    "net.ipv4.tcp_keepalive_time": 7200,
    "net.ipv4.tcp_keepalive_intvl": 75,
    "net.ipv4.tcp_keepalive_probes": 9,
}


def nf_stat_text(cpus: list[dict[str, int]], header: str = NF_HEADER, entries: int = 1000) -> str:
    """net/stat/nf_conntrack text with one row per CPU; missing counters are 0."""
    names = header.split()
    lines = [header]
    for counters in cpus:
        values = [entries if name == "entries" else counters.get(name, 0) for name in names]
        lines.append(" ".join(f"{value:08x}" for value in values))
    return "\n".join(lines) + "\n"


def make_proc(
    root: Path,
    sysctls: dict[str, int | str | bytes | None] | None = None,
    *,
    initial: bool = True,
    nf_stat: str | bytes | None = None,
) -> Path:
    """Write a fake proc tree: NODE_SYSCTLS overridden by ``sysctls`` (None removes one), the namespace marker
    (nf_conntrack_max / _buckets mode 0644 in the initial namespace, 0444 elsewhere) and net/stat/nf_conntrack."""
    values: dict[str, int | str | bytes | None] = {**NODE_SYSCTLS, **(sysctls or {})}
    for name, value in values.items():
        if value is None:
            continue
        path = root.joinpath("sys", *name.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = value if isinstance(value, bytes) else f"{value}\n".encode()
        path.write_bytes(data)
        if name.endswith(("nf_conntrack_max", "nf_conntrack_buckets")):
            os.chmod(path, 0o644 if initial else 0o444)
    stat = root / "net" / "stat" / "nf_conntrack"
    stat.parent.mkdir(parents=True, exist_ok=True)
    if nf_stat is None:
        nf_stat = nf_stat_text([{}, {}])
    stat.write_bytes(nf_stat if isinstance(nf_stat, bytes) else nf_stat.encode())
    return root
