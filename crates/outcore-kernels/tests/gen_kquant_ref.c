// Reference bytes for the k-quant quantizers, from ggml's own C code.
//
// gguf-py has no k-quant quantizers, so tests/kquant_reference.rs compares our ports against
// the output of ggml's `quantize_row_{q2,q3,q4,q5,q6,q8}_K_ref` on data/quant/kquant_input.f32.
// This file is only the driver; ggml itself is not vendored. To regenerate (any recent ggml or
// llama.cpp checkout; results were made with ggml-org/ggml d99724f2b):
//
//   G=/path/to/ggml
//   gcc -O2 -ffp-contract=off -std=c11 -I$G/include -I$G/src \
//       gen_kquant_ref.c $G/src/ggml-quants.c -lm -o /tmp/gen_kquant_ref
//   (cd data/quant && /tmp/gen_kquant_ref)
//
// -ffp-contract=off keeps the compiler from fusing a*b+c, as a plain x86-64 build does.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

#include "ggml.h"
#include "ggml-quants.h"

#define N_PER_ROW 512

// ggml-quants.c references these from ggml.c; the *_ref quantizers used here never call them.
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt);
    abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; abort(); }
size_t ggml_type_size(enum ggml_type type) { (void) type; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; return "?"; }

typedef void (*quant_fn)(const float *, void *, int64_t);

int main(void) {
    FILE * f = fopen("kquant_input.f32", "rb");
    if (!f) { perror("kquant_input.f32"); return 1; }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t n = (size_t) bytes / sizeof(float);
    float * x = malloc(n * sizeof(float));
    if (fread(x, sizeof(float), n, f) != n) { perror("read"); return 1; }
    fclose(f);

    struct { const char * name; quant_fn fn; size_t block_bytes; } types[] = {
        { "Q2_K", (quant_fn) quantize_row_q2_K_ref,  84 },
        { "Q3_K", (quant_fn) quantize_row_q3_K_ref, 110 },
        { "Q4_K", (quant_fn) quantize_row_q4_K_ref, 144 },
        { "Q5_K", (quant_fn) quantize_row_q5_K_ref, 176 },
        { "Q6_K", (quant_fn) quantize_row_q6_K_ref, 210 },
        { "Q8_K", (quant_fn) quantize_row_q8_K_ref, 292 },
    };
    size_t rows = n / N_PER_ROW;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        size_t row_bytes = N_PER_ROW / 256 * types[t].block_bytes;
        uint8_t * out = calloc(rows, row_bytes);
        for (size_t r = 0; r < rows; r++) {
            types[t].fn(x + r * N_PER_ROW, out + r * row_bytes, N_PER_ROW);
        }
        char path[64];
        snprintf(path, sizeof(path), "kquant_%s.bin", types[t].name);
        FILE * o = fopen(path, "wb");
        fwrite(out, row_bytes, rows, o);
        fclose(o);
        free(out);
    }
    free(x);
    return 0;
}
