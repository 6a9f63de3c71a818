// Host emulation of the CUDA built-ins that neuralmass's generated kernels use.
//
// Test infrastructure: the printed kernel source is compiled unchanged as host C++ after this
// header, and NM_EMULATE(kernel) exports `kernel_launch(grid_x, grid_y, block, args)`, which
// runs the launch grid (blocks in parallel with OpenMP when available, the threads of a block
// one after the other) with kernel arguments passed as cuLaunchKernel takes them: an array of
// pointers to the values. The kernels use no shared memory and no __syncthreads, and the
// threads of one launch share nothing, so running them in any order is exact.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __constant__
// __restrict__ is a g++ and clang extension already.
using std::isfinite;  // a CUDA built-in; <cmath> declares it in std only

struct nm_dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
static thread_local nm_dim3 threadIdx, blockIdx, blockDim, gridDim;

// High word of the 64-bit product (CUDA's integer intrinsic).
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
}

template <typename T>
inline T __ldg(const T* pointer) {
    return *pointer;
}

template <typename... Args, std::size_t... I>
inline void nm_call(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(args[I])...);
}

template <typename... Args>
void nm_emulate(void (*kernel)(Args...), unsigned int grid_x, unsigned int grid_y,
                unsigned int block, void** args) {
    const long blocks = static_cast<long>(grid_x) * grid_y;
#pragma omp parallel for schedule(dynamic)
    for (long b = 0; b < blocks; ++b) {
        gridDim.x = grid_x;
        gridDim.y = grid_y;
        blockDim.x = block;
        blockIdx.x = static_cast<unsigned int>(b % grid_x);
        blockIdx.y = static_cast<unsigned int>(b / grid_x);
        for (unsigned int t = 0; t < block; ++t) {
            threadIdx.x = t;
            nm_call(kernel, args, std::index_sequence_for<Args...>{});
        }
    }
}

#define NM_EMULATE(kernel)                                                                \
    extern "C" void kernel##_launch(unsigned int grid_x, unsigned int grid_y,             \
                                    unsigned int block, void** args) {                    \
        nm_emulate(kernel, grid_x, grid_y, block, args);                                  \
    }
