#pragma once
#include <dnnl.h>

// Macros Swift cannot import as constants.
static inline void *nnseg_dnnl_memory_allocate(void) { return DNNL_MEMORY_ALLOCATE; }
static inline void *nnseg_dnnl_memory_none(void) { return DNNL_MEMORY_NONE; }
static const int nnseg_dnnl_arg_src = DNNL_ARG_SRC;
static const int nnseg_dnnl_arg_dst = DNNL_ARG_DST;
static const int nnseg_dnnl_arg_weights = DNNL_ARG_WEIGHTS;
static const int nnseg_dnnl_arg_bias = DNNL_ARG_BIAS;
static const int nnseg_dnnl_arg_from = DNNL_ARG_FROM;
static const int nnseg_dnnl_arg_to = DNNL_ARG_TO;
static const int nnseg_dnnl_arg_diff_src = DNNL_ARG_DIFF_SRC;
static const int nnseg_dnnl_arg_diff_dst = DNNL_ARG_DIFF_DST;
static const int nnseg_dnnl_arg_diff_weights = DNNL_ARG_DIFF_WEIGHTS;
static const int nnseg_dnnl_arg_diff_bias = DNNL_ARG_DIFF_BIAS;
static inline int nnseg_dnnl_arg_multiple_src(int i) { return DNNL_ARG_MULTIPLE_SRC + i; }
