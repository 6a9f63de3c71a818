"""Numba intrinsics for the hot loops: blocks of lanes as tuples, and the coupling sums.

The generated model functions work on tuples (one value per state variable and lane), which
Numba keeps in registers; :func:`load_block` and :func:`store_block` move them with plain
pointer arithmetic: no negative-index wrap-around and no bounds checks, so that LLVM sees
consecutive addresses and turns the per-lane arithmetic into SIMD instructions.

:func:`channel_sums` and :func:`block_channel_sums` are the weighted sums over the edges of
one target node, written directly as LLVM loops over ``<width x float>`` vectors. Both read
the history in its node-major layout: the ``width`` values (channels × lanes) of source node
``j`` at ring row ``r`` start at ``base + j * node_stride + r * width``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = ["load_block", "store_block", "channel_sums", "block_channel_sums"]


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


def _array_data(context, builder, signature, args, n):
    return context.make_array(signature.args[n])(context, builder, args[n]).data


def _int64(context, builder, signature, args, n):
    return context.cast(builder, args[n], signature.args[n], types.int64)


def _load_int64(context, builder, signature, args, n, index):
    data = _array_data(context, builder, signature, args, n)
    return context.cast(builder, builder.load(builder.gep(data, [index])),
                        signature.args[n].dtype, types.int64)


def _splat(builder, vector, value):
    size = vector.count
    single = builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                    ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), size), [0] * size))


def _vector_pointer(builder, data, offset, vector):
    return builder.bitcast(builder.gep(data, [offset], inbounds=True), vector.as_pointer())


def _check_sum_arguments(name, arrays, literals, history, weights):
    for array in arrays:
        if not isinstance(array, types.Array) or array.ndim != 1 or array.layout != "C":
            raise TypingError(f"{name} needs 1-D C-contiguous arrays, got {array}")
    for literal in literals:
        if not isinstance(literal, types.IntegerLiteral):
            raise TypingError(f"{name}: sizes must be compile-time constants, got {literal}")
    if weights.dtype != history.dtype:
        raise TypingError(f"{name}: weights and history must share a dtype")


@intrinsic
def channel_sums(typingctx, history, base, mask, node_stride, step, delay, source, weights,
                 start, stop, initial, initial_offset, width):
    """``initial[initial_offset:][:width] + Σ_e weights[e] * h_e`` over the edges
    ``start <= e < stop``, where ``h_e`` is the history block of source node ``source[e]``
    at ring row ``(step - delay[e]) & mask``; a tuple of ``width`` (a constant).

    One ``<width x float>`` accumulator stays in registers across the edges.
    """
    _check_sum_arguments("channel_sums", (history, delay, source, weights, initial),
                         (width,), history, weights)
    size = int(width.literal_value)
    result = types.UniTuple(history.dtype, size)
    signature = result(history, base, mask, node_stride, step, delay, source, weights, start,
                       stop, initial, initial_offset, width)

    def codegen(context, builder, signature, args):
        history_data = _array_data(context, builder, signature, args, 0)
        weight_data = _array_data(context, builder, signature, args, 7)
        base_v, mask_v, stride_v, step_v, start_v, stop_v, initial_v = (
            _int64(context, builder, signature, args, n) for n in (1, 2, 3, 4, 8, 9, 11))
        int64 = ir.IntType(64)
        element = context.get_value_type(history.dtype)
        vector = ir.VectorType(element, size)
        width_v = ir.Constant(int64, size)
        itemsize = context.get_abi_sizeof(element)
        first = builder.load(_vector_pointer(
            builder, _array_data(context, builder, signature, args, 10), initial_v, vector),
            align=itemsize)

        def block_offset(edge):
            row = builder.and_(builder.sub(step_v, _load_int64(
                context, builder, signature, args, 5, edge)), mask_v)
            node = builder.mul(_load_int64(context, builder, signature, args, 6, edge),
                               stride_v)
            return builder.add(builder.add(base_v, node), builder.mul(row, width_v))

        entry = builder.block
        loop = builder.append_basic_block("channel_sums.loop")
        done = builder.append_basic_block("channel_sums.done")
        builder.cbranch(builder.icmp_signed("<", start_v, stop_v), loop, done)

        builder.position_at_end(loop)
        edge = builder.phi(int64)
        total = builder.phi(vector)
        edge.add_incoming(start_v, entry)
        total.add_incoming(first, entry)
        delayed = builder.load(_vector_pointer(builder, history_data, block_offset(edge),
                                               vector), align=itemsize)
        weight = builder.load(builder.gep(weight_data, [edge]))
        updated = builder.fadd(total, builder.fmul(delayed, _splat(builder, vector, weight)))
        following = builder.add(edge, ir.Constant(int64, 1))
        edge.add_incoming(following, loop)
        total.add_incoming(updated, loop)
        builder.cbranch(builder.icmp_signed("<", following, stop_v), loop, done)

        builder.position_at_end(done)
        final = builder.phi(vector)
        final.add_incoming(first, entry)
        final.add_incoming(updated, loop)
        values = [builder.extract_element(final, ir.Constant(ir.IntType(32), m))
                  for m in range(size)]
        return context.make_tuple(builder, result, values)

    return signature, codegen


@intrinsic
def block_channel_sums(typingctx, history, base, mask, node_stride, first_step, n_steps,
                       source_start, delay, target, weights, out, width, block):
    """The far coupling sums of all target nodes for ``n_steps`` consecutive steps at once.

    ``out[(i * block + s) * width:][:width] = Σ_e weights[e] * h_e(first_step + s)`` for
    ``s < n_steps`` and every edge ``e = (i ← j)`` of the list, which is ordered by source
    node: the edges of source ``j`` are ``source_start[j] <= e < source_start[j + 1]``;
    ``h_e(k)`` is the history block of ``j`` at ring row ``(k - delay[e]) & mask``. ``width``
    and ``block`` (≥ ``n_steps``) are constants.

    Source after source, the rows read are consecutive in memory (the history is
    node-major) and, when the source's edges are sorted by delay, overlap from one edge to
    the next: the reads stream and are reused from cache instead of jumping across the
    buffer. Valid when every ``delay[e] >= n_steps`` (no row is written during the block).
    """
    _check_sum_arguments("block_channel_sums",
                         (history, source_start, delay, target, weights, out),
                         (width, block), history, weights)
    if out.dtype != history.dtype:
        raise TypingError("block_channel_sums: out and history must share a dtype")
    size = int(width.literal_value)
    block_size = int(block.literal_value)
    signature = types.none(history, base, mask, node_stride, first_step, n_steps,
                           source_start, delay, target, weights, out, width, block)

    def codegen(context, builder, signature, args):
        history_data = _array_data(context, builder, signature, args, 0)
        weight_data = _array_data(context, builder, signature, args, 9)
        out_data = _array_data(context, builder, signature, args, 10)
        base_v, mask_v, stride_v, first_v, steps_v = (
            _int64(context, builder, signature, args, n) for n in (1, 2, 3, 4, 5))
        n_sources = builder.sub(context.make_array(signature.args[6])(
            context, builder, args[6]).nitems, ir.Constant(ir.IntType(64), 1))
        int64 = ir.IntType(64)
        element = context.get_value_type(history.dtype)
        vector = ir.VectorType(element, size)
        width_v = ir.Constant(int64, size)
        target_stride = ir.Constant(int64, block_size * size)
        itemsize = context.get_abi_sizeof(element)

        with cgutils.for_range(builder, builder.mul(n_sources,
                                                    ir.Constant(int64, block_size))) as loop:
            pointer = _vector_pointer(builder, out_data, builder.mul(loop.index, width_v),
                                      vector)
            builder.store(ir.Constant(vector, None), pointer, align=itemsize)
        with cgutils.for_range(builder, n_sources) as sources:
            node = builder.add(base_v, builder.mul(sources.index, stride_v))
            first_edge = _load_int64(context, builder, signature, args, 6, sources.index)
            last_edge = _load_int64(context, builder, signature, args, 6,
                                    builder.add(sources.index, ir.Constant(int64, 1)))
            with cgutils.for_range(builder, builder.sub(last_edge, first_edge)) as edges:
                edge = builder.add(first_edge, edges.index)
                weight = _splat(builder, vector,
                                builder.load(builder.gep(weight_data, [edge])))
                oldest = builder.sub(first_v, _load_int64(context, builder, signature, args,
                                                          7, edge))
                sums = builder.mul(_load_int64(context, builder, signature, args, 8, edge),
                                   target_stride)
                with cgutils.for_range(builder, steps_v) as steps:
                    row = builder.and_(builder.add(oldest, steps.index), mask_v)
                    delayed = builder.load(_vector_pointer(
                        builder, history_data, builder.add(node, builder.mul(row, width_v)),
                        vector), align=itemsize)
                    pointer = _vector_pointer(builder, out_data, builder.add(
                        sums, builder.mul(steps.index, width_v)), vector)
                    total = builder.load(pointer, align=itemsize)
                    builder.store(builder.fadd(total, builder.fmul(delayed, weight)), pointer,
                                  align=itemsize)
        return context.get_dummy_value()

    return signature, codegen
