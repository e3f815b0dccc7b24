// Lets generated CUDA C compile as C++ with g++ and run on the CPU, for the
// emulation tests (tests/cuda_emulate.rs). Blocks run one after another.
// Kernels without __syncthreads run their threads sequentially on the
// calling thread; kernels with it run one std::thread per thread of the
// block, with a std::barrier as __syncthreads and `static` locals as
// __shared__ storage (safe because blocks never overlap in time).
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
#include <math.h>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

struct netc_dim3 {
  unsigned int x = 1, y = 1, z = 1;
};
inline thread_local netc_dim3 blockIdx, threadIdx, blockDim, gridDim;
inline thread_local std::barrier<>* netc_block_barrier = nullptr;

inline void __syncthreads() {
  if (netc_block_barrier) netc_block_barrier->arrive_and_wait();
}

inline float atomicAdd(float* p, float v) {
  static std::mutex m;
  std::lock_guard<std::mutex> g(m);
  const float old = *p;
  *p = old + v;
  return old;
}

template <class F>
void netc_run(unsigned int grid, unsigned int block, bool sync, F f) {
  if (!sync) {
    blockDim.x = block;
    gridDim.x = grid;
    for (unsigned int b = 0; b < grid; ++b) {
      blockIdx.x = b;
      for (unsigned int t = 0; t < block; ++t) {
        threadIdx.x = t;
        f();
      }
    }
    return;
  }
  std::barrier<> bar(block);
  std::vector<std::thread> threads;
  threads.reserve(block);
  for (unsigned int t = 0; t < block; ++t) {
    threads.emplace_back([&, t] {
      netc_block_barrier = &bar;
      blockDim.x = block;
      gridDim.x = grid;
      threadIdx.x = t;
      for (unsigned int b = 0; b < grid; ++b) {
        blockIdx.x = b;
        f();
        bar.arrive_and_wait();
      }
      netc_block_barrier = nullptr;
    });
  }
  for (auto& th : threads) th.join();
}

// cublasSgemm on the host: column-major, C = alpha*op(A)*op(B) + beta*C,
// accumulated in double.
extern "C" void netc_sgemm(int ta, int tb, long long m, long long n, long long k, float alpha,
                           const float* A, long long lda, const float* B, long long ldb,
                           float beta, float* C, long long ldc) {
  for (long long j = 0; j < n; ++j) {
    for (long long i = 0; i < m; ++i) {
      double acc = 0.0;
      for (long long l = 0; l < k; ++l) {
        const float a = ta ? A[l + i * lda] : A[i + l * lda];
        const float b = tb ? B[j + l * ldb] : B[l + j * ldb];
        acc += (double)a * (double)b;
      }
      float* c = &C[i + j * ldc];
      *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
    }
  }
}
