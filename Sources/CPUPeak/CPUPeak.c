// The roofline's ceiling (issue #16): how many float32 FMAs per second one thread of this CPU retires, measured,
// not taken from a data sheet. Twelve independent accumulators cover the FMA latency on both ports of the cores
// this project meets (AMD Zen 2–5, Intel Skylake-SP…Sapphire Rapids); each function is compiled for its ISA with a
// target attribute and chosen at run time, so the rest of the project keeps its baseline target.
#include "CPUPeak.h"
#include <immintrin.h>
#include <pthread.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define ACCUMULATORS(T, SET) T a0 = SET(1.0f), a1 = SET(1.1f), a2 = SET(1.2f), a3 = SET(1.3f), a4 = SET(1.4f), \
    a5 = SET(1.5f), a6 = SET(1.6f), a7 = SET(1.7f), a8 = SET(1.8f), a9 = SET(1.9f), a10 = SET(2.0f), a11 = SET(2.1f)
#define STEP(F) a0 = F(a0, b, c); a1 = F(a1, b, c); a2 = F(a2, b, c); a3 = F(a3, b, c); a4 = F(a4, b, c); a5 = F(a5, b, c); \
    a6 = F(a6, b, c); a7 = F(a7, b, c); a8 = F(a8, b, c); a9 = F(a9, b, c); a10 = F(a10, b, c); a11 = F(a11, b, c)

__attribute__((target("avx512f"))) static float run_avx512(long n) {
    ACCUMULATORS(__m512, _mm512_set1_ps);
    const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < n; i++) { STEP(_mm512_fmadd_ps); }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float run_avx2(long n) {
    ACCUMULATORS(__m256, _mm256_set1_ps);
    const __m256 b = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < n; i++) { STEP(_mm256_fmadd_ps); }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

static __m128 mul_add_sse(__m128 a, __m128 b, __m128 c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }

static float run_sse(long n) {
    ACCUMULATORS(__m128, _mm_set1_ps);
    const __m128 b = _mm_set1_ps(0.9999999f), c = _mm_set1_ps(1e-7f);
    for (long i = 0; i < n; i++) { STEP(mul_add_sse); }
    __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)), _mm_add_ps(_mm_add_ps(a4, a5), _mm_add_ps(a6, a7)));
    s = _mm_add_ps(s, _mm_add_ps(_mm_add_ps(a8, a9), _mm_add_ps(a10, a11)));
    float out[4];
    _mm_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3];
}

volatile float nnseg_cpu_peak_sink;

double nnseg_fma_peak_gflops(double seconds, const char **isa) {
    __builtin_cpu_init();
    int lanes;
    float (*run)(long);
    if (__builtin_cpu_supports("avx512f")) { run = run_avx512; lanes = 16; *isa = "avx512"; }
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) { run = run_avx2; lanes = 8; *isa = "avx2"; }
    else { run = run_sse; lanes = 4; *isa = "sse"; }
    // Grow the loop until one run lasts a tenth of the budget, then take the best of the runs that fit.
    long n = 1 << 16;
    double best = 0;
    double start = now();
    while (now() - start < seconds) {
        double t0 = now();
        nnseg_cpu_peak_sink = run(n);
        double dt = now() - t0;
        double rate = 12.0 * lanes * 2.0 * (double)n / dt / 1e9;
        if (dt > seconds / 10 && rate > best) best = rate;
        if (dt < seconds / 10) n *= 2;
    }
    return best;
}

struct peak_job { double seconds; double gflops; const char *isa; };

static void *peak_thread(void *argument) {
    struct peak_job *job = argument;
    job->gflops = nnseg_fma_peak_gflops(job->seconds, &job->isa);
    return NULL;
}

double nnseg_fma_peak_gflops_threads(double seconds, int threads, const char **isa, double *per_thread) {
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    struct peak_job jobs[256];
    pthread_t ids[256];
    int started[256];
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct peak_job){ seconds, 0, "" };
        started[t] = pthread_create(&ids[t], NULL, peak_thread, &jobs[t]) == 0;
        if (!started[t]) peak_thread(&jobs[t]);  // no thread to be had: measure here, one after another
    }
    double total = 0;
    for (int t = 0; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
        total += jobs[t].gflops;
        if (per_thread) per_thread[t] = jobs[t].gflops;
    }
    if (isa) *isa = jobs[0].isa;
    return total;
}
