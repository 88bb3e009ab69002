"""A small BPF assembler that mirrors the kernel's ``include/linux/filter.h`` macros.

Each function builds one ``struct bpf_insn`` (``BPF_LD_MAP_FD`` builds the two halves of a 64-bit load), named
and ordered like the C macro it stands for, so a hand-built program reads like the kernel's own test programs
(``tools/testing/selftests/bpf/verifier/*.c``)::

    BPF_MOV64_REG(R6, R1),                      # r6 = ctx
    BPF_LDX_MEM(BPF_W, R2, R6, 0),              # r2 = ctx->op
    BPF_JMP_IMM(BPF_JNE, R2, 4, "out"),         # if (r2 != 4) goto out

Jump offsets may be a label name (a ``label("out")`` marker in the same list) instead of a number;
``assemble()`` resolves them and packs the instructions in this machine's byte order.
Encodings: ``include/uapi/linux/bpf.h`` and ``bpf_common.h`` (instruction classes, sizes, operations).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Insn",
    "Label",
    "assemble",
    "label",
]

# Registers: r0 return value, r1-r5 arguments (clobbered by calls), r6-r9 callee-saved, r10 frame pointer.
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

# Instruction classes (bpf_common.h, bpf.h).
BPF_LD: Final = 0x00
BPF_LDX: Final = 0x01
BPF_ST: Final = 0x02
BPF_STX: Final = 0x03
BPF_ALU: Final = 0x04
BPF_JMP: Final = 0x05
BPF_JMP32: Final = 0x06
BPF_ALU64: Final = 0x07

# Sizes.
BPF_W: Final = 0x00  # 4 bytes
BPF_H: Final = 0x08  # 2 bytes
BPF_B: Final = 0x10  # 1 byte
BPF_DW: Final = 0x18  # 8 bytes

# Modes.
BPF_IMM: Final = 0x00
BPF_MEM: Final = 0x60
BPF_ATOMIC: Final = 0xC0

# Sources.
BPF_K: Final = 0x00  # the immediate
BPF_X: Final = 0x08  # the source register

# ALU operations.
BPF_ADD: Final = 0x00
BPF_SUB: Final = 0x10
BPF_OR: Final = 0x40
BPF_AND: Final = 0x50
BPF_RSH: Final = 0x70
BPF_MOV: Final = 0xB0

# Jump operations.
BPF_JA: Final = 0x00
BPF_JEQ: Final = 0x10
BPF_JGT: Final = 0x20
BPF_JGE: Final = 0x30
BPF_JSET: Final = 0x40
BPF_JNE: Final = 0x50
BPF_CALL: Final = 0x80
BPF_EXIT: Final = 0x90

#: ``src_reg`` of a 64-bit immediate load whose immediate is a map's file descriptor.
BPF_PSEUDO_MAP_FD: Final = 1


@dataclass(frozen=True, slots=True)
class Insn:
    """One ``struct bpf_insn``: opcode, registers, offset (an int, or a label to resolve) and immediate."""

    code: int
    dst: int = 0
    src: int = 0
    off: int | str = 0
    imm: int = 0


@dataclass(frozen=True, slots=True)
class Label:
    """A jump target: not an instruction, it names the position of the next one."""

    name: str


def label(name: str) -> Label:
    """Mark the position of the next instruction as ``name`` (a jump's ``off`` may name it)."""
    return Label(name)


# --- the filter.h macros -----------------------------------------------------------------------------------------


def BPF_ALU64_REG(op: int, dst: int, src: int) -> Insn:
    """``dst = dst OP src`` (64-bit)."""
    return Insn(BPF_ALU64 | op | BPF_X, dst, src)


def BPF_ALU64_IMM(op: int, dst: int, imm: int) -> Insn:
    """``dst = dst OP imm`` (64-bit; imm is sign-extended)."""
    return Insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)


def BPF_ALU32_IMM(op: int, dst: int, imm: int) -> Insn:
    """``dst = (u32)(dst OP imm)`` (32-bit; the upper half is zeroed)."""
    return Insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm)


def BPF_MOV64_REG(dst: int, src: int) -> Insn:
    """``dst = src``."""
    return Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src)


def BPF_MOV64_IMM(dst: int, imm: int) -> Insn:
    """``dst = imm`` (sign-extended to 64 bits)."""
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)


def BPF_LD_MAP_FD(dst: int, map_fd: int) -> tuple[Insn, Insn]:
    """``dst = &map`` (a 64-bit immediate load in two halves; the verifier swaps the fd for the map)."""
    return (Insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd), Insn(0))


def BPF_LDX_MEM(size: int, dst: int, src: int, off: int) -> Insn:
    """``dst = *(size *)(src + off)``."""
    return Insn(BPF_LDX | size | BPF_MEM, dst, src, off)


def BPF_STX_MEM(size: int, dst: int, src: int, off: int) -> Insn:
    """``*(size *)(dst + off) = src``."""
    return Insn(BPF_STX | size | BPF_MEM, dst, src, off)


def BPF_ST_MEM(size: int, dst: int, off: int, imm: int) -> Insn:
    """``*(size *)(dst + off) = imm``."""
    return Insn(BPF_ST | size | BPF_MEM, dst, 0, off, imm)


def BPF_ATOMIC_OP(size: int, op: int, dst: int, src: int, off: int) -> Insn:
    """``lock *(size *)(dst + off) OP= src`` (BPF_ADD: an atomic add, the old BPF_XADD)."""
    return Insn(BPF_STX | size | BPF_ATOMIC, dst, src, off, op)


def BPF_JMP_IMM(op: int, dst: int, imm: int, off: int | str) -> Insn:
    """``if (dst OP imm) goto off`` (64-bit compare; imm is sign-extended)."""
    return Insn(BPF_JMP | op | BPF_K, dst, 0, off, imm)


def BPF_JMP_REG(op: int, dst: int, src: int, off: int | str) -> Insn:
    """``if (dst OP src) goto off`` (64-bit compare)."""
    return Insn(BPF_JMP | op | BPF_X, dst, src, off)


def BPF_JMP32_IMM(op: int, dst: int, imm: int, off: int | str) -> Insn:
    """``if ((u32)dst OP (u32)imm) goto off`` (32-bit compare: no sign extension of imm)."""
    return Insn(BPF_JMP32 | op | BPF_K, dst, 0, off, _s32(imm))


def BPF_JMP_A(off: int | str) -> Insn:
    """``goto off``."""
    return Insn(BPF_JMP | BPF_JA, 0, 0, off)


def BPF_EMIT_CALL(func: int) -> Insn:
    """``r0 = helper_func(r1, r2, r3, r4, r5)``: call the kernel helper numbered ``func`` (``BPF_FUNC_*``)."""
    return Insn(BPF_JMP | BPF_CALL, 0, 0, 0, func)


def BPF_EXIT_INSN() -> Insn:
    """``return r0``."""
    return Insn(BPF_JMP | BPF_EXIT)


# --- assembling ---------------------------------------------------------------------------------------------------


def _s32(value: int) -> int:
    """``value`` as the signed 32-bit immediate the encoding holds (0xFFFF0000 -> -65536)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


Item = Insn | Label | tuple[Insn, Insn]


def _flatten(program: Sequence[Item]) -> list[Insn | Label]:
    flat: list[Insn | Label] = []
    for item in program:
        if isinstance(item, tuple):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def assemble(program: Sequence[Item]) -> bytes:
    """The program's bytes (``struct bpf_insn[]``, host byte order) with label offsets resolved.

    Raises ValueError for an unknown or duplicate label, a backward jump (the program has no loops) or a field
    out of range.
    """
    flat = _flatten(program)
    positions: dict[str, int] = {}
    index = 0
    for item in flat:
        if isinstance(item, Label):
            if item.name in positions:
                raise ValueError(f"label {item.name!r} is defined twice")
            positions[item.name] = index
        else:
            index += 1
    out = bytearray()
    little = sys.byteorder == "little"
    index = 0
    for item in flat:
        if isinstance(item, Label):
            continue
        off = item.off
        if isinstance(off, str):
            if off not in positions:
                raise ValueError(f"jump to unknown label {off!r}")
            off = positions[off] - index - 1
            if off < 0:
                raise ValueError(f"backward jump to {item.off!r}: this program has no loops")
        if not (0 <= item.dst <= 10 and 0 <= item.src <= 10):
            raise ValueError(f"register out of range in {item}")
        regs = (item.src << 4) | item.dst if little else (item.dst << 4) | item.src
        out += struct.pack("=BBhi", item.code, regs, off, _s32(item.imm))
        index += 1
    return bytes(out)
