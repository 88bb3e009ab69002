"""The filter.h-style assembler encodes instructions as the kernel does, and the program passes the verifier."""

from __future__ import annotations

import os
import struct
import sys

import pytest

from keepalive._enforce import _asm, _bpf, _program
from keepalive._enforce._asm import (
    BPF_ADD,
    BPF_ALU64_IMM,
    BPF_EMIT_CALL,
    BPF_EXIT_INSN,
    BPF_JEQ,
    BPF_JMP32_IMM,
    BPF_JMP_A,
    BPF_JMP_IMM,
    BPF_LD_MAP_FD,
    BPF_LDX_MEM,
    BPF_MOV64_IMM,
    BPF_MOV64_REG,
    BPF_W,
    R0,
    R1,
    R2,
    R6,
    R10,
    assemble,
    label,
)
from tests.enforce_support import require_enforce

little = pytest.mark.skipif(sys.byteorder != "little", reason="byte strings below are little-endian encodings")


@little
def test_instructions_encode_like_the_kernel() -> None:
    """Encodings as bpftool/llvm-objdump print them (struct bpf_insn: code, dst|src<<4, off, imm)."""
    cases = [
        (BPF_MOV64_REG(R6, R1), "bf 16 00 00 00 00 00 00"),  # r6 = r1
        (BPF_LDX_MEM(BPF_W, R2, R6, 24), "61 62 18 00 00 00 00 00"),  # r2 = *(u32 *)(r6 + 24)
        (BPF_ALU64_IMM(BPF_ADD, R2, -16), "07 02 00 00 f0 ff ff ff"),  # r2 += -16
        (BPF_MOV64_IMM(R0, 1), "b7 00 00 00 01 00 00 00"),  # r0 = 1
        (BPF_EMIT_CALL(1), "85 00 00 00 01 00 00 00"),  # call bpf_map_lookup_elem
        (BPF_EXIT_INSN(), "95 00 00 00 00 00 00 00"),  # exit
    ]
    for insn, hex_bytes in cases:
        assert assemble([insn]).hex(" ") == hex_bytes, insn


@little
def test_a_map_load_takes_two_slots_with_the_pseudo_map_fd_source() -> None:
    assert assemble([BPF_LD_MAP_FD(R1, 5)]).hex(" ") == "18 11 00 00 05 00 00 00 00 00 00 00 00 00 00 00"


def test_labels_resolve_to_forward_offsets_counting_map_loads_as_two() -> None:
    code = assemble(
        [
            BPF_JMP_IMM(BPF_JEQ, R1, 0, "out"),
            BPF_LD_MAP_FD(R1, 3),
            BPF_JMP_A("out"),
            label("out"),
            BPF_EXIT_INSN(),
        ]
    )
    offsets = [struct.unpack_from("=h", code, i + 2)[0] for i in range(0, len(code), 8)]
    assert offsets == [3, 0, 0, 0, 0]


def test_a_32_bit_compare_keeps_the_immediate_s_bit_pattern() -> None:
    """0xFFFF0000 is stored as the s32 -65536; BPF_JMP32 compares the low 32 bits, so it still means 0xFFFF0000."""
    code = assemble([BPF_JMP32_IMM(BPF_JEQ, R1, 0xFFFF0000, "x"), label("x"), BPF_EXIT_INSN()])
    assert struct.unpack_from("=i", code, 4)[0] == -65536
    assert code[0] == 0x16  # BPF_JMP32 | BPF_JEQ | BPF_K


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ([BPF_JMP_A("nowhere"), BPF_EXIT_INSN()], "unknown label"),
        ([label("a"), label("a"), BPF_EXIT_INSN()], "defined twice"),
        ([label("top"), BPF_MOV64_IMM(R0, 0), BPF_JMP_A("top")], "backward jump"),
        ([BPF_MOV64_REG(11, R10)], "register out of range"),
    ],
)
def test_assembler_mistakes_are_errors(program: list[_asm.Item], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assemble(program)


def test_policy_and_counter_layouts_round_trip() -> None:
    value = _program.pack_policy(37, 7, 3, 58000, skip_loopback=True)
    assert _program.unpack_policy(value) == (37, 7, 3, 58000, True)
    counters = _program.COUNTERS.pack(*range(len(_program.COUNTER_NAMES)))
    assert _program.unpack_counters(counters)["within"] == 2


def test_the_sock_ops_program_passes_this_kernels_verifier() -> None:
    """Loading the program is the verifier's check (CI runs it as root)."""
    require_enforce()
    policy = _bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, 4, _program.POLICY.size, 1, "t_policy")
    counters = _bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, 4, _program.COUNTERS.size, 1, "t_counters")
    try:
        fd = _bpf.prog_load(
            _bpf.BPF_PROG_TYPE_SOCK_OPS, _program.build(policy, counters), _bpf.BPF_CGROUP_SOCK_OPS, "t_keepalive"
        )
        try:
            info = _bpf.fdinfo(fd)
            assert info["prog_type"] == str(_bpf.BPF_PROG_TYPE_SOCK_OPS)
            assert int(info.get("verified_insns", "1")) > 0
        finally:
            os.close(fd)
    finally:
        os.close(policy)
        os.close(counters)


def test_a_refused_program_raises_with_the_verifier_log() -> None:
    require_enforce()
    with pytest.raises(_bpf.VerifierError) as info:
        _bpf.prog_load(_bpf.BPF_PROG_TYPE_SOCK_OPS, assemble([BPF_EXIT_INSN()]), _bpf.BPF_CGROUP_SOCK_OPS, "t_bad")
    assert "R0 !read_ok" in info.value.log
