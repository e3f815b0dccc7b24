// Lets generated CUDA C compile as C++ with g++ and run on the CPU, for the
// emulation tests (tests/cuda_emulate.rs). Blocks run one after another on
// the calling thread. Kernels without __syncthreads run their threads
// sequentially; kernels with it run each thread of the block as a fiber
// (ucontext) scheduled round-robin, so __syncthreads is a barrier: a fiber
// that reaches it yields and is resumed only after every other thread of
// the block has reached it (or finished). `static` locals serve as
// __shared__ storage (safe because blocks never overlap in time).
#pragma once
#include <cmath>
#include <cstring>
#include <math.h>
#include <mutex>
#include <ucontext.h>
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
struct netc_fibers {
  std::vector<ucontext_t> ctx;
  std::vector<std::vector<char>> stacks;
  std::vector<char> done;
  ucontext_t main;
  unsigned int cur = 0;
  void (*body)(void*) = nullptr;
  void* env = nullptr;
};
inline thread_local netc_fibers* netc_sched = nullptr;

inline void __syncthreads() {
  if (netc_sched) swapcontext(&netc_sched->ctx[netc_sched->cur], &netc_sched->main);
}

inline void netc_fiber_entry() {
  netc_fibers* s = netc_sched;
  s->body(s->env);
  s->done[s->cur] = 1;  // returns to s->main through uc_link
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
  static thread_local netc_fibers fib;
  fib.ctx.resize(block);
  fib.stacks.resize(block);
  fib.done.assign(block, 0);
  fib.body = [](void* e) { (*static_cast<F*>(e))(); };
  fib.env = &f;
  blockDim.x = block;
  gridDim.x = grid;
  netc_sched = &fib;
  for (unsigned int b = 0; b < grid; ++b) {
    blockIdx.x = b;
    for (unsigned int t = 0; t < block; ++t) {
      fib.stacks[t].resize(1 << 16);
      fib.done[t] = 0;
      getcontext(&fib.ctx[t]);
      fib.ctx[t].uc_stack.ss_sp = fib.stacks[t].data();
      fib.ctx[t].uc_stack.ss_size = fib.stacks[t].size();
      fib.ctx[t].uc_link = &fib.main;
      makecontext(&fib.ctx[t], netc_fiber_entry, 0);
    }
    for (bool live = true; live;) {
      live = false;
      for (unsigned int t = 0; t < block; ++t) {
        if (fib.done[t]) continue;
        fib.cur = t;
        threadIdx.x = t;
        swapcontext(&fib.main, &fib.ctx[t]);
        live = live || !fib.done[t];
      }
    }
  }
  netc_sched = nullptr;
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
