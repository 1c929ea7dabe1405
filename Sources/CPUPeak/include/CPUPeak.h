#ifndef NNSEG_CPU_PEAK_H
#define NNSEG_CPU_PEAK_H
#ifdef __cplusplus
extern "C" {
#endif

/// The single-thread floating-point peak this CPU reaches: a loop of independent fused multiply-adds (float32) in
/// the widest vectors it has (AVX-512, else AVX2+FMA, else SSE multiply and add), run for about `seconds`.
/// Returns GFLOP/s (2 per FMA lane); `isa` gets "avx512", "avx2" or "sse".
double nnseg_fma_peak_gflops(double seconds, const char **isa);

/// The same on `threads` threads at once (as many as oneDNN uses): the sum of their rates. `per_thread`, when not
/// NULL, gets each thread's rate (`threads` entries). At most 256 threads.
double nnseg_fma_peak_gflops_threads(double seconds, int threads, const char **isa, double *per_thread);

#ifdef __cplusplus
}
#endif
#endif
