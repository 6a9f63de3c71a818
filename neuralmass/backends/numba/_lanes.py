"""Two Numba intrinsics that move a block of consecutive array elements to and from a tuple.

The generated model functions work on tuples (one value per state variable and lane), which
Numba keeps in registers; these intrinsics load and store them with plain pointer arithmetic:
no negative-index wrap-around and no bounds checks, so that LLVM sees consecutive addresses
and can turn the per-lane arithmetic into SIMD instructions.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = ["load_block", "store_block"]


def _check(array, count, name):
    if not isinstance(array, types.Array) or array.ndim != 1 or array.layout != "C":
        raise TypingError(f"{name} needs a 1-D C-contiguous array, got {array}")
    if not isinstance(count, types.IntegerLiteral):
        raise TypingError(f"{name}: the element count must be a compile-time constant")


@intrinsic
def load_block(typingctx, array, offset, count):
    """``(array[offset], ..., array[offset + count - 1])`` as a tuple; ``count`` a constant.
    The caller guarantees the elements exist."""
    _check(array, count, "load_block")
    size = int(count.literal_value)
    result = types.UniTuple(array.dtype, size)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        start = context.cast(builder, args[1], signature.args[1], types.intp)
        base = builder.gep(data, [start], inbounds=True)
        values = [builder.load(builder.gep(base, [cgutils.intp_t(m)], inbounds=True))
                  for m in range(size)]
        return context.make_tuple(builder, result, values)

    return result(array, offset, count), codegen


@intrinsic
def store_block(typingctx, array, offset, values, first, count):
    """``array[offset + m] = values[first + m]`` for ``m < count``; ``first`` and ``count``
    compile-time constants."""
    _check(array, count, "store_block")
    if not isinstance(first, types.IntegerLiteral):
        raise TypingError("store_block: the first tuple index must be a compile-time constant")
    if not isinstance(values, types.UniTuple) or values.dtype != array.dtype:
        raise TypingError(f"store_block needs a tuple of {array.dtype}, got {values}")
    start_value, size = int(first.literal_value), int(count.literal_value)
    if start_value + size > values.count:
        raise TypingError(f"store_block: values {start_value}..{start_value + size - 1} "
                          f"requested from a {values.count}-tuple")

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        start = context.cast(builder, args[1], signature.args[1], types.intp)
        base = builder.gep(data, [start], inbounds=True)
        for m in range(size):
            builder.store(builder.extract_value(args[2], start_value + m),
                          builder.gep(base, [cgutils.intp_t(m)], inbounds=True))
        return context.get_dummy_value()

    return types.none(array, offset, values, first, count), codegen
