"""The sock_ops program that brings every new TCP connection of a cgroup within the policy, and its maps' layouts.

In C it would read::

    int keepalive(struct bpf_sock_ops *ctx) {
        if (ctx->op != ACTIVE_ESTABLISHED_CB && ctx->op != PASSIVE_ESTABLISHED_CB) return 1;
        policy = lookup(&policy_map, 0); counters = lookup(&counters_map, 0);
        counters->seen++;
        if ((policy->flags & SKIP_LOOPBACK) && remote address is 127/8, ::1 or ::ffff:127/104) {
            counters->skipped_loopback++; return 1;
        }
        for (opt in TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)    // tighten-only: never loosen
            if (bpf_getsockopt(opt) fails || current > policy.opt) bpf_setsockopt(opt, policy.opt);
        if (bpf_getsockopt(SO_KEEPALIVE) fails || !current) bpf_setsockopt(SO_KEEPALIVE, 1);
        if (policy.user_timeout_ms && (bpf_getsockopt(TCP_USER_TIMEOUT) fails || !current))
            bpf_setsockopt(TCP_USER_TIMEOUT, policy.user_timeout_ms);
        counters->tightened (something set) or ->within (nothing to set), ->set_outright (a read failed),
            ->failed (a write was refused) += 1;
        return 1;
    }

The kernel calls sock_ops programs only for TCP sockets, so other sockets are never touched. A socket without
SO_KEEPALIVE reads back the sysctl defaults (tcp_keepalive_time/intvl/probes) for idle, interval and count: that
is what it would use once keepalive is on, so comparing against them is the right tighten-only rule. Where the
kernel cannot read an option in this callback (bpf_getsockopt for these options arrived in Linux 6.1) the
program sets the policy's value outright and counts it in ``set_outright``.

The policy lives in an ARRAY map (one entry, ``POLICY``) that the loader rewrites in place to change it without
detaching anything; the counters in another (one entry of ``COUNTERS`` u64s, atomic adds).
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Final

from keepalive._enforce._asm import (
    BPF_ADD,
    BPF_ALU64_IMM,
    BPF_AND,
    BPF_ATOMIC_OP,
    BPF_DW,
    BPF_EMIT_CALL,
    BPF_EXIT_INSN,
    BPF_JEQ,
    BPF_JGE,
    BPF_JMP32_IMM,
    BPF_JMP_A,
    BPF_JMP_IMM,
    BPF_JMP_REG,
    BPF_JNE,
    BPF_LD_MAP_FD,
    BPF_LDX_MEM,
    BPF_MOV64_IMM,
    BPF_MOV64_REG,
    BPF_OR,
    BPF_RSH,
    BPF_ST_MEM,
    BPF_STX_MEM,
    BPF_W,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    Item,
    assemble,
    label,
)

__all__ = ["COUNTERS", "POLICY", "build", "pack_policy", "unpack_counters", "unpack_policy"]

# Kernel helpers (include/uapi/linux/bpf.h, ___BPF_FUNC_MAPPER order).
BPF_FUNC_map_lookup_elem: Final = 1
BPF_FUNC_setsockopt: Final = 49
BPF_FUNC_getsockopt: Final = 57

# struct bpf_sock_ops field offsets (include/uapi/linux/bpf.h).
OP: Final = 0
FAMILY: Final = 20
REMOTE_IP4: Final = 24
REMOTE_IP6: Final = 32  # __u32 remote_ip6[4]

# enum: BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB.
ACTIVE_ESTABLISHED_CB: Final = 4
PASSIVE_ESTABLISHED_CB: Final = 5

# Socket options (asm-generic/socket.h, linux/tcp.h): the same numbers on every Linux architecture we load on.
SOL_SOCKET: Final = 1
SO_KEEPALIVE: Final = 9
SOL_TCP: Final = 6
TCP_KEEPIDLE: Final = 4
TCP_KEEPINTVL: Final = 5
TCP_KEEPCNT: Final = 6
TCP_USER_TIMEOUT: Final = 18

#: The policy map's value: u32 idle, interval, count, user_timeout_ms (0: leave the socket's own), flags, spare.
POLICY: Final = struct.Struct("=6I")
P_IDLE, P_INTERVAL, P_COUNT, P_USER_TIMEOUT, P_FLAGS = 0, 4, 8, 12, 16
FLAG_SKIP_LOOPBACK: Final = 1

#: The counters map's value: u64 each, in this order.
COUNTER_NAMES: Final = ("seen", "tightened", "within", "skipped_loopback", "set_outright", "failed")
COUNTERS: Final = struct.Struct(f"={len(COUNTER_NAMES)}Q")
C_SEEN, C_TIGHTENED, C_WITHIN, C_SKIPPED, C_OUTRIGHT, C_FAILED = (8 * i for i in range(len(COUNTER_NAMES)))

# Bits of r9, the connection's outcome.
CHANGED: Final = 1  # at least one option was set
OUTRIGHT: Final = 2  # an option could not be read, so it was set without comparing
FAILED: Final = 4  # a bpf_setsockopt call failed

# Stack slots (r10 is the read-only frame pointer).
VALUE: Final = -8  # u32 option value passed to bpf_getsockopt/bpf_setsockopt
KEY: Final = -16  # u32 map key 0


def pack_policy(idle: int, interval: int, count: int, user_timeout_ms: int, *, skip_loopback: bool) -> bytes:
    """The policy map's value."""
    return POLICY.pack(idle, interval, count, user_timeout_ms, FLAG_SKIP_LOOPBACK if skip_loopback else 0, 0)


def unpack_policy(value: bytes) -> tuple[int, int, int, int, bool]:
    """(idle, interval, count, user_timeout_ms, skip_loopback) from the policy map's value."""
    idle, interval, count, user_ms, flags, _ = POLICY.unpack(value)
    return idle, interval, count, user_ms, bool(flags & FLAG_SKIP_LOOPBACK)


def unpack_counters(value: bytes) -> dict[str, int]:
    """The counters map's value as a dict named by ``COUNTER_NAMES``."""
    return dict(zip(COUNTER_NAMES, COUNTERS.unpack(value), strict=True))


def _call(helper: int, level: int, optname: int) -> list[Item]:
    """``r0 = helper(ctx, level, optname, &value, 4)`` for bpf_getsockopt / bpf_setsockopt."""
    return [
        BPF_MOV64_REG(R1, R6),  # r1 = ctx
        BPF_MOV64_IMM(R2, level),  # r2 = level
        BPF_MOV64_IMM(R3, optname),  # r3 = optname
        BPF_MOV64_REG(R4, R10),  # r4 = fp
        BPF_ALU64_IMM(BPF_ADD, R4, VALUE),  # r4 = &value
        BPF_MOV64_IMM(R5, 4),  # r5 = sizeof(int)
        BPF_EMIT_CALL(helper),  # r0 = helper(...)
    ]


def _set(name: str, level: int, optname: int) -> list[Item]:
    """Set ``value`` (already on the stack) and record the outcome in r9."""
    return [
        *_call(BPF_FUNC_setsockopt, level, optname),  # r0 = bpf_setsockopt(ctx, level, optname, &value, 4)
        BPF_JMP_IMM(BPF_JEQ, R0, 0, f"{name}_ok"),  # if (r0 == 0) goto ok
        BPF_ALU64_IMM(BPF_OR, R9, FAILED),  # outcome |= FAILED
        BPF_JMP_A(f"{name}_done"),  # goto done
        label(f"{name}_ok"),
        BPF_ALU64_IMM(BPF_OR, R9, CHANGED),  # outcome |= CHANGED
        label(f"{name}_done"),
    ]


def _tighten(name: str, optname: int, policy_offset: int) -> list[Item]:
    """``if (getsockopt fails || current > policy) setsockopt(policy)`` for a TCP option measured in units."""
    return [
        BPF_ST_MEM(BPF_W, R10, VALUE, 0),  # value = 0
        *_call(BPF_FUNC_getsockopt, SOL_TCP, optname),  # r0 = bpf_getsockopt(ctx, SOL_TCP, optname, &value, 4)
        BPF_LDX_MEM(BPF_W, R2, R7, policy_offset),  # r2 = policy->field
        BPF_JMP_IMM(BPF_JNE, R0, 0, f"{name}_unreadable"),  # if (r0 != 0) goto unreadable
        BPF_LDX_MEM(BPF_W, R1, R10, VALUE),  # r1 = value (the current setting)
        BPF_JMP_REG(BPF_JGE, R2, R1, f"{name}_done"),  # if (policy >= current) goto done: never loosen
        BPF_JMP_A(f"{name}_set"),  # goto set
        label(f"{name}_unreadable"),
        BPF_ALU64_IMM(BPF_OR, R9, OUTRIGHT),  # outcome |= OUTRIGHT
        label(f"{name}_set"),
        BPF_STX_MEM(BPF_W, R10, R2, VALUE),  # value = policy->field
        *_set(name, SOL_TCP, optname),
    ]


def _enable_if_off(name: str, level: int, optname: int, wanted: Item) -> list[Item]:
    """``if (getsockopt fails || current == 0) setsockopt(wanted)``: for SO_KEEPALIVE and TCP_USER_TIMEOUT.

    ``wanted`` loads the value to set into r2 (after the getsockopt call, which clobbers r1-r5).
    """
    return [
        BPF_ST_MEM(BPF_W, R10, VALUE, 0),  # value = 0
        *_call(BPF_FUNC_getsockopt, level, optname),  # r0 = bpf_getsockopt(ctx, level, optname, &value, 4)
        BPF_JMP_IMM(BPF_JNE, R0, 0, f"{name}_unreadable"),  # if (r0 != 0) goto unreadable
        BPF_LDX_MEM(BPF_W, R1, R10, VALUE),  # r1 = value
        BPF_JMP_IMM(BPF_JNE, R1, 0, f"{name}_done"),  # if (current != 0) goto done: already on / already set
        BPF_JMP_A(f"{name}_set"),  # goto set
        label(f"{name}_unreadable"),
        BPF_ALU64_IMM(BPF_OR, R9, OUTRIGHT),  # outcome |= OUTRIGHT
        label(f"{name}_set"),
        wanted,  # r2 = the wanted value
        BPF_STX_MEM(BPF_W, R10, R2, VALUE),  # value = r2
        *_set(name, level, optname),
    ]


def _octet_127(byteorder: str) -> tuple[int, int]:
    """(mask, value) that pick the first octet of an address word in network order, loaded as a host u32."""
    return (0xFF, 127) if byteorder == "little" else (0xFF000000, 127 << 24)


def _loopback_check() -> list[Item]:
    """Jump to ``loopback`` if the remote address is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104, else fall through."""
    mask, first = _octet_127(sys.byteorder)
    one = struct.unpack("=I", socket.inet_aton("0.0.0.1"))[0]  # htonl(1)
    mapped = struct.unpack("=I", bytes((0, 0, 0xFF, 0xFF)))[0]  # htonl(0xffff)
    return [
        BPF_LDX_MEM(BPF_W, R1, R7, P_FLAGS),  # r1 = policy->flags
        BPF_ALU64_IMM(BPF_AND, R1, FLAG_SKIP_LOOPBACK),  # r1 &= SKIP_LOOPBACK
        BPF_JMP_IMM(BPF_JEQ, R1, 0, "options"),  # if (!r1) goto options
        BPF_LDX_MEM(BPF_W, R1, R6, FAMILY),  # r1 = ctx->family
        BPF_JMP_IMM(BPF_JNE, R1, socket.AF_INET, "v6"),  # if (r1 != AF_INET) goto v6
        BPF_LDX_MEM(BPF_W, R1, R6, REMOTE_IP4),  # r1 = ctx->remote_ip4
        BPF_ALU64_IMM(BPF_AND, R1, mask),  # r1 &= first octet
        BPF_JMP32_IMM(BPF_JEQ, R1, first, "loopback"),  # if (first octet == 127) goto loopback
        BPF_JMP_A("options"),  # goto options
        label("v6"),
        BPF_JMP_IMM(BPF_JNE, R1, socket.AF_INET6, "options"),  # if (r1 != AF_INET6) goto options
        BPF_LDX_MEM(BPF_W, R1, R6, REMOTE_IP6),  # r1 = ctx->remote_ip6[0]
        BPF_JMP_IMM(BPF_JNE, R1, 0, "options"),  # if (r1 != 0) goto options
        BPF_LDX_MEM(BPF_W, R1, R6, REMOTE_IP6 + 4),  # r1 = ctx->remote_ip6[1]
        BPF_JMP_IMM(BPF_JNE, R1, 0, "options"),  # if (r1 != 0) goto options
        BPF_LDX_MEM(BPF_W, R1, R6, REMOTE_IP6 + 8),  # r1 = ctx->remote_ip6[2]
        BPF_LDX_MEM(BPF_W, R2, R6, REMOTE_IP6 + 12),  # r2 = ctx->remote_ip6[3]
        BPF_JMP32_IMM(BPF_JEQ, R1, 0, "v6_zero"),  # if (r1 == 0) goto v6_zero: maybe ::1
        BPF_JMP32_IMM(BPF_JNE, R1, mapped, "options"),  # if (r1 != htonl(0xffff)) goto options: not v4-mapped
        BPF_ALU64_IMM(BPF_AND, R2, mask),  # r2 &= first octet
        BPF_JMP32_IMM(BPF_JEQ, R2, first, "loopback"),  # if (first octet == 127) goto loopback: ::ffff:127.x
        BPF_JMP_A("options"),  # goto options
        label("v6_zero"),
        BPF_JMP32_IMM(BPF_JEQ, R2, one, "loopback"),  # if (r2 == htonl(1)) goto loopback: ::1
        BPF_JMP_A("options"),  # goto options
        label("loopback"),
        BPF_MOV64_IMM(R1, 1),  # r1 = 1
        BPF_ATOMIC_OP(BPF_DW, BPF_ADD, R8, R1, C_SKIPPED),  # counters->skipped_loopback += 1
        BPF_JMP_A("out"),  # goto out
    ]


def _count(shift: int, offset: int) -> list[Item]:
    """``counters->field += (outcome >> shift) & 1`` (an atomic add of 0 or 1, no branch)."""
    return [
        BPF_MOV64_REG(R1, R9),  # r1 = outcome
        BPF_ALU64_IMM(BPF_RSH, R1, shift),  # r1 >>= shift
        BPF_ALU64_IMM(BPF_AND, R1, 1),  # r1 &= 1
        BPF_ATOMIC_OP(BPF_DW, BPF_ADD, R8, R1, offset),  # counters->field += r1
    ]


def program(policy_fd: int, counters_fd: int) -> list[Item]:
    """The instructions, with the two maps' file descriptors built in."""
    return [
        BPF_MOV64_REG(R6, R1),  # r6 = ctx
        BPF_LDX_MEM(BPF_W, R1, R6, OP),  # r1 = ctx->op
        BPF_JMP_IMM(BPF_JEQ, R1, ACTIVE_ESTABLISHED_CB, "established"),  # connect() completed
        BPF_JMP_IMM(BPF_JEQ, R1, PASSIVE_ESTABLISHED_CB, "established"),  # accept()ed connection completed
        BPF_JMP_A("out"),  # any other callback: nothing to do
        label("established"),
        BPF_ST_MEM(BPF_W, R10, KEY, 0),  # key = 0
        BPF_LD_MAP_FD(R1, policy_fd),  # r1 = &policy_map
        BPF_MOV64_REG(R2, R10),  # r2 = fp
        BPF_ALU64_IMM(BPF_ADD, R2, KEY),  # r2 = &key
        BPF_EMIT_CALL(BPF_FUNC_map_lookup_elem),  # r0 = lookup(&policy_map, &key)
        BPF_JMP_IMM(BPF_JEQ, R0, 0, "out"),  # if (!r0) goto out
        BPF_MOV64_REG(R7, R0),  # r7 = policy
        BPF_LD_MAP_FD(R1, counters_fd),  # r1 = &counters_map
        BPF_MOV64_REG(R2, R10),  # r2 = fp
        BPF_ALU64_IMM(BPF_ADD, R2, KEY),  # r2 = &key
        BPF_EMIT_CALL(BPF_FUNC_map_lookup_elem),  # r0 = lookup(&counters_map, &key)
        BPF_JMP_IMM(BPF_JEQ, R0, 0, "out"),  # if (!r0) goto out
        BPF_MOV64_REG(R8, R0),  # r8 = counters
        BPF_MOV64_IMM(R1, 1),  # r1 = 1
        BPF_ATOMIC_OP(BPF_DW, BPF_ADD, R8, R1, C_SEEN),  # counters->seen += 1
        *_loopback_check(),
        label("options"),
        BPF_MOV64_IMM(R9, 0),  # outcome = 0
        *_tighten("idle", TCP_KEEPIDLE, P_IDLE),
        *_tighten("interval", TCP_KEEPINTVL, P_INTERVAL),
        *_tighten("count", TCP_KEEPCNT, P_COUNT),
        *_enable_if_off("keepalive", SOL_SOCKET, SO_KEEPALIVE, BPF_MOV64_IMM(R2, 1)),  # r2 = 1 (on)
        BPF_LDX_MEM(BPF_W, R1, R7, P_USER_TIMEOUT),  # r1 = policy->user_timeout_ms
        BPF_JMP_IMM(BPF_JEQ, R1, 0, "counters"),  # if (!r1) goto counters: leave the socket's own
        *_enable_if_off(
            "user_timeout", SOL_TCP, TCP_USER_TIMEOUT, BPF_LDX_MEM(BPF_W, R2, R7, P_USER_TIMEOUT)
        ),  # r2 = policy->user_timeout_ms
        label("counters"),
        *_count(0, C_TIGHTENED),  # counters->tightened += changed
        BPF_MOV64_REG(R1, R9),  # r1 = outcome
        BPF_ALU64_IMM(BPF_AND, R1, CHANGED | FAILED),  # r1 = something set, or refused
        BPF_JMP_IMM(BPF_JNE, R1, 0, "flags"),  # if (r1) goto flags: not within
        BPF_MOV64_IMM(R1, 1),  # r1 = 1
        BPF_ATOMIC_OP(BPF_DW, BPF_ADD, R8, R1, C_WITHIN),  # counters->within += 1
        label("flags"),
        *_count(1, C_OUTRIGHT),  # counters->set_outright += outright
        *_count(2, C_FAILED),  # counters->failed += failed
        label("out"),
        BPF_MOV64_IMM(R0, 1),  # r0 = 1
        BPF_EXIT_INSN(),  # return 1
    ]


def build(policy_fd: int, counters_fd: int) -> bytes:
    """The assembled program for these maps."""
    return assemble(program(policy_fd, counters_fd))
