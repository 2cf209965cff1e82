"""Prefetch hints for numba loops over random rows of large arrays.

The run's per-user and per-person arrays (books of up to gigabytes, samplers and
attributes of millions of users) are read at random, one request after another. A
loop that names the rows it will need a few items ahead lets their cache misses
overlap instead of stalling it one after another. A hint changes no result: the CPU
may ignore it, and it never faults.

A leaf module (numba and llvmlite only), used by the kernel (rtb.kernel), the people
book (rtb.people), the user rows' hand-out (rtb.state), the audience's draws and gathers (dmp.sampling, dmp.audience,
dmp.identity) and the bid pass (dsp.bidding).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Items of a loop between a hint and the read it serves: about one main-memory latency
# of the loop's work. The kernel does much per request; a gather or a draw a few
# instructions, so one latency spans many more of them.
PREFETCH_AHEAD = 8
GATHER_AHEAD = 32

_I32 = ir.IntType(32)


def _hint(builder, base, offset, write: bool) -> None:
    """llvm.prefetch of base (i8*) + offset bytes: kept in all cache levels."""
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), _I32, _I32, _I32])
    prefetch = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    # (address, write, locality 3 = keep in all levels, data cache)
    builder.call(prefetch, [builder.gep(base, [offset]), _I32(int(write)), _I32(3), _I32(1)])


def _hint_lines(builder, base, start, n_bytes, spill: int) -> None:
    """A write hint every 64 bytes from base + start, (n_bytes + spill) // 64 of them."""
    line = ir.Constant(n_bytes.type, 64)
    n_lines = builder.udiv(builder.add(n_bytes, ir.Constant(n_bytes.type, spill)), line)
    with cgutils.for_range(builder, n_lines) as loop:
        _hint(builder, base, builder.add(start, builder.mul(loop.index, line)), write=True)


def _row_start(context, builder, signature, args):
    """(the array's struct, its data as an i8 pointer, its first stride, the byte offset
    of item or row args[1])."""
    ary, base = _data(context, builder, signature.args[0], args[0])
    stride = cgutils.unpack_tuple(builder, ary.strides)[0]
    start = builder.mul(context.cast(builder, args[1], signature.args[1], types.intp), stride)
    return ary, base, stride, start


def _data(context, builder, array_type, value):
    """(the array's struct, its data as an i8 pointer)."""
    ary = context.make_array(array_type)(context, builder, value)
    return ary, builder.bitcast(ary.data, ir.IntType(8).as_pointer())


@intrinsic
def prefetch_row(typingctx, array, row):
    """Fetch every cache line of row `row` of a 2-D array (its columns contiguous), to
    be written (a column view of the run's user rows, rtb/layout.py: its own part of
    the row)."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and array.layout in "CA"):
        return None

    def codegen(context, builder, signature, args):
        ary, base, stride, start = _row_start(context, builder, signature, args)
        width = cgutils.unpack_tuple(builder, ary.shape)[1]
        item = ir.Constant(stride.type, context.get_abi_sizeof(
            context.get_data_type(signature.args[0].dtype)))
        row_bytes = builder.mul(width, item)
        # A column view may start inside a line: one line more covers its end.
        _hint_lines(builder, base, start, row_bytes, 63 if signature.args[0].layout == "C" else 127)
        return context.get_dummy_value()

    return types.void(array, row), codegen


@intrinsic
def prefetch_stride(typingctx, array, row):
    """Fetch every cache line of the `row`-th stride of a 2-D array from its row's first
    item, to be written: for the first column view of the run's user rows
    (rtb/layout.py), the user's whole row, whatever its columns."""
    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None

    def codegen(context, builder, signature, args):
        _, base, stride, start = _row_start(context, builder, signature, args)
        # A line every 64 bytes from the start, and the last byte's (a row need not
        # start on a line).
        _hint_lines(builder, base, start, stride, 63)
        last = builder.sub(builder.add(start, stride), ir.Constant(stride.type, 1))
        _hint(builder, base, last, write=True)
        return context.get_dummy_value()

    return types.void(array, row), codegen


@intrinsic
def prefetch_item(typingctx, array, index):
    """Fetch the cache line of item `index` of a 1-D array, to be read."""
    if not (isinstance(array, types.Array) and array.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        _, base, _, at = _row_start(context, builder, signature, args)
        _hint(builder, base, at, write=False)
        return context.get_dummy_value()

    return types.void(array, index), codegen


@intrinsic
def prefetch_cell(typingctx, array, row, col):
    """Fetch the cache line of array[row, col] (a 2-D array, any strides), to be
    written."""
    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None

    def codegen(context, builder, signature, args):
        ary, base = _data(context, builder, signature.args[0], args[0])
        stride_row, stride_col = cgutils.unpack_tuple(builder, ary.strides)
        r = context.cast(builder, args[1], signature.args[1], types.intp)
        c = context.cast(builder, args[2], signature.args[2], types.intp)
        _hint(builder, base, builder.add(builder.mul(r, stride_row), builder.mul(c, stride_col)),
              write=True)
        return context.get_dummy_value()

    return types.void(array, row, col), codegen
