// oneDNN's 3×3×3 training convolutions of the Hippocampus 3d_fullres network alone (batch 9), in the layout nnseg
// uses (`format_tag any`: oneDNN picks its channel-blocked nCdhw16c on AVX-512) and in channels-last (ndhwc), for
// #25: is there a faster kernel in the installed oneDNN for the full-resolution 32-channel layers than the one the
// network runs? Prints the implementation, ms per call and GFLOP/s of forward, backward data and backward weights,
// and the ratio channels-last ÷ blocked per primitive (> 1: blocked is faster). Then the same layers as nnseg's training
// computes them on AVX-512 now (depth-split Winograd, Sources/TensorKernels/DNNL/DepthSplitWinograd.swift): one 2-D
// Winograd convolution (`jit_wino_4x3`) of all N·D depth slices to 3·oc channels, and the ratio direct ÷ Winograd per
// primitive (the regrouping copies and the shifted sums around it are not included).
//
//   gcc -O2 Ops/bench/onednn_conv_layouts.c -o /tmp/onednn_conv_layouts -ldnnl && OMP_NUM_THREADS=2 /tmp/onednn_conv_layouts
//
// Compare with the per-primitive times `ONEDNN_VERBOSE=1 TrainingBenchmark <repo> 3 fp32` prints for the same shapes.
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHECK(x)                                                                  \
    do {                                                                          \
        dnnl_status_t status_ = (x);                                              \
        if (status_ != dnnl_success) {                                            \
            fprintf(stderr, "oneDNN error %d in %s\n", (int)status_, #x);         \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

enum { FORWARD, BACKWARD_DATA, BACKWARD_WEIGHTS, KINDS };
static const char *kindNames[KINDS] = {"forward", "backward data", "backward weights"};

// Times one primitive: `repeats` calls after two warm-up calls; returns seconds per call.
static double timePrimitive(dnnl_engine_t engine, dnnl_stream_t stream, const_dnnl_primitive_desc_t pd, int kind,
                            int repeats, const char **implementation) {
    static const int arguments[KINDS][4] = {
        {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS},
        {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST, 0},
        {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_BIAS}};
    static const dnnl_query_t queries[KINDS][4] = {
        {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md, dnnl_query_weights_md},
        {dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md, 0},
        {dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md}};
    dnnl_primitive_t primitive;
    CHECK(dnnl_primitive_create(&primitive, pd));
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, implementation));
    dnnl_exec_arg_t args[4];
    int count = 0;
    for (int a = 0; a < 4; a++) {
        if (arguments[kind][a] == 0) continue;
        // The bias is the weights query's second index.
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, queries[kind][a], a == 3 ? 1 : 0);
        dnnl_memory_t memory;
        CHECK(dnnl_memory_create(&memory, md, engine, DNNL_MEMORY_ALLOCATE));
        void *handle;
        CHECK(dnnl_memory_get_data_handle(memory, &handle));
        size_t floats = dnnl_memory_desc_get_size(md) / sizeof(float);
        for (size_t i = 0; i < floats; i++) ((float *)handle)[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        args[count].arg = arguments[kind][a];
        args[count].memory = memory;
        count++;
    }
    for (int r = 0; r < 2; r++) CHECK(dnnl_primitive_execute(primitive, stream, count, args));
    CHECK(dnnl_stream_wait(stream));
    double start = now();
    for (int r = 0; r < repeats; r++) CHECK(dnnl_primitive_execute(primitive, stream, count, args));
    CHECK(dnnl_stream_wait(stream));
    double seconds = (now() - start) / repeats;
    for (int a = 0; a < count; a++) dnnl_memory_destroy(args[a].memory);
    dnnl_primitive_destroy(primitive);
    return seconds;
}

// Creates the forward, backward-data and backward-weights primitives of one convolution with `algorithm` and times
// each (seconds[KINDS], 0 where not timed), printing a line per primitive named after the 3×3×3 layer (batch 9) it
// computes, with its direct-convolution GFLOP/s. Returns the status of creating the forward primitive: anything but
// dnnl_success means oneDNN has no kernel for the algorithm here, and nothing is timed.
static dnnl_status_t timeTrainingPrimitives(dnnl_engine_t engine, dnnl_stream_t stream, dnnl_alg_kind_t algorithm,
                                            dnnl_memory_desc_t *source, dnnl_memory_desc_t *weights, dnnl_memory_desc_t *bias,
                                            dnnl_memory_desc_t *destination, const dnnl_dims_t strides,
                                            const dnnl_dims_t padding, int inChannels, int outChannels, const int spatial[3],
                                            const char *name, double seconds[KINDS]) {
    double flops = 2.0 * 9 * inChannels * outChannels * 27 * spatial[0] * spatial[1] * spatial[2];
    dnnl_primitive_desc_t pds[KINDS];
    dnnl_convolution_desc_t forward, backwardData, backwardWeights;
    for (int k = 0; k < KINDS; k++) seconds[k] = 0;
    CHECK(dnnl_convolution_forward_desc_init(&forward, dnnl_forward_training, algorithm, source, weights, bias, destination,
                                             strides, padding, padding));
    dnnl_status_t status = dnnl_primitive_desc_create(&pds[FORWARD], &forward, NULL, engine, NULL);
    if (status != dnnl_success) return status;
    CHECK(dnnl_convolution_backward_data_desc_init(&backwardData, algorithm, source, weights, destination, strides, padding,
                                                   padding));
    CHECK(dnnl_primitive_desc_create(&pds[BACKWARD_DATA], &backwardData, NULL, engine, pds[FORWARD]));
    CHECK(dnnl_convolution_backward_weights_desc_init(&backwardWeights, algorithm, source, weights, bias, destination, strides,
                                                      padding, padding));
    CHECK(dnnl_primitive_desc_create(&pds[BACKWARD_WEIGHTS], &backwardWeights, NULL, engine, pds[FORWARD]));
    for (int k = 0; k < KINDS; k++) {
        const char *implementation;
        seconds[k] = timePrimitive(engine, stream, pds[k], k, 6, &implementation);
        printf("ic%-3d oc%-3d %dx%dx%d  %-13s %-16s %-22s %7.1f ms  %4.0f GFLOP/s%s\n", inChannels, outChannels, spatial[0],
               spatial[1], spatial[2], name, kindNames[k], implementation, seconds[k] * 1e3, flops / seconds[k] / 1e9,
               algorithm == dnnl_convolution_direct ? "" : " direct-equivalent");
        dnnl_primitive_desc_destroy(pds[k]);
    }
    return dnnl_success;
}

// Times the three primitives of one 3×3×3 "same" convolution with activations in `tag`; fills seconds[KINDS].
static void timeConvolution(dnnl_engine_t engine, dnnl_stream_t stream, int inChannels, int outChannels,
                            const int spatial[3], dnnl_format_tag_t tag, const char *tagName, double seconds[KINDS]) {
    dnnl_dims_t sourceDims = {9, inChannels, spatial[0], spatial[1], spatial[2]};
    dnnl_dims_t destinationDims = {9, outChannels, spatial[0], spatial[1], spatial[2]};
    dnnl_dims_t weightDims = {outChannels, inChannels, 3, 3, 3}, biasDims = {outChannels};
    dnnl_dims_t strides = {1, 1, 1}, padding = {1, 1, 1};
    dnnl_memory_desc_t source, destination, weights, bias;
    CHECK(dnnl_memory_desc_init_by_tag(&source, 5, sourceDims, dnnl_f32, tag));
    CHECK(dnnl_memory_desc_init_by_tag(&destination, 5, destinationDims, dnnl_f32, tag));
    CHECK(dnnl_memory_desc_init_by_tag(&weights, 5, weightDims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&bias, 1, biasDims, dnnl_f32, dnnl_a));
    CHECK(timeTrainingPrimitives(engine, stream, dnnl_convolution_direct, &source, &weights, &bias, &destination, strides,
                                 padding, inChannels, outChannels, spatial, tagName, seconds));
}

// Times the 2-D Winograd convolution of the N·D depth slices of one 3×3×3 layer to 3·oc channels (nChw16c); fills
// seconds[KINDS] (0 where oneDNN has no Winograd kernel here, e.g. without AVX-512).
static void timeDepthSplitWinograd(dnnl_engine_t engine, dnnl_stream_t stream, int inChannels, int outChannels,
                                   const int spatial[3], double seconds[KINDS]) {
    int images = 9 * spatial[0];
    dnnl_dims_t sourceDims = {images, inChannels, spatial[1], spatial[2]};
    dnnl_dims_t destinationDims = {images, 3 * outChannels, spatial[1], spatial[2]};
    dnnl_dims_t weightDims = {3 * outChannels, inChannels, 3, 3}, biasDims = {3 * outChannels};
    dnnl_dims_t strides = {1, 1}, padding = {1, 1};
    dnnl_memory_desc_t source, destination, weights, bias;
    CHECK(dnnl_memory_desc_init_by_tag(&source, 4, sourceDims, dnnl_f32, dnnl_nChw16c));
    CHECK(dnnl_memory_desc_init_by_tag(&destination, 4, destinationDims, dnnl_f32, dnnl_nChw16c));
    CHECK(dnnl_memory_desc_init_by_tag(&weights, 4, weightDims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&bias, 1, biasDims, dnnl_f32, dnnl_a));
    if (timeTrainingPrimitives(engine, stream, dnnl_convolution_winograd, &source, &weights, &bias, &destination, strides,
                               padding, inChannels, outChannels, spatial, "depth-split", seconds) != dnnl_success)
        printf("ic%-3d oc%-3d no Winograd kernel here\n", inChannels, outChannels);
}

int main(void) {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    // The full-resolution layers (1.65 s of a 3.6 s fp32 step on #25's Intel Xeon) and one of the next stage.
    static const struct { int in, out, spatial[3]; } layers[] = {
        {32, 32, {40, 56, 40}}, {64, 32, {40, 56, 40}}, {64, 64, {20, 28, 20}}};
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        double blocked[KINDS], channelsLast[KINDS];
        timeConvolution(engine, stream, layers[l].in, layers[l].out, layers[l].spatial, dnnl_format_tag_any,
                        "any (blocked)", blocked);
        timeConvolution(engine, stream, layers[l].in, layers[l].out, layers[l].spatial, dnnl_ndhwc, "ndhwc",
                        channelsLast);
        for (int k = 0; k < KINDS; k++)
            printf("ic%-3d oc%-3d %-16s channels-last ÷ blocked: %.2f\n", layers[l].in, layers[l].out, kindNames[k],
                   channelsLast[k] / blocked[k]);
        double winograd[KINDS];
        timeDepthSplitWinograd(engine, stream, layers[l].in, layers[l].out, layers[l].spatial, winograd);
        for (int k = 0; k < KINDS; k++)
            if (winograd[k] > 0)
                printf("ic%-3d oc%-3d %-16s direct ÷ depth-split Winograd: %.2f\n", layers[l].in, layers[l].out, kindNames[k],
                       blocked[k] / winograd[k]);
    }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return 0;
}
