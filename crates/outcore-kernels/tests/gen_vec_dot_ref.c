// Reference results of ggml's scalar dot products (`ggml_vec_dot_*_generic` in
// ggml-cpu/quants.c), for tests/ggml_reference.rs. Only this driver is ours; ggml is not vendored.
// For every weight type it takes the random blocks of data/quant/blocks_<TYPE>.bin, quantizes a
// fixed activation row with ggml's reference quantizer of the vec_dot type, and writes
// vecdot_<TYPE>.act (activation blocks) and vecdot_<TYPE>.f32 (the dot product).
//
//   G=/path/to/ggml   # results were made with ggml-org/ggml d99724f2b
//   gcc -O2 -ffp-contract=off -std=c11 -DGGML_CPU_GENERIC -I$G/include -I$G/src -I$G/src/ggml-cpu \
//       gen_vec_dot_ref.c $G/src/ggml-quants.c $G/src/ggml-cpu/quants.c -lm -o /tmp/gen_vec_dot_ref
//   (cd data/quant && /tmp/gen_vec_dot_ref)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "ggml.h"
#include "ggml-quants.h"
#include "ggml-cpu/quants.h"

float ggml_table_f32_f16[1 << 16];

void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt);
    abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; abort(); }
size_t ggml_type_size(enum ggml_type type) { (void) type; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; return "?"; }

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t) (h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) { bits = sign; }
        else { float f = ldexpf((float) man, -24); memcpy(&bits, &f, 4); bits |= sign; }
    } else if (exp == 31) { bits = sign | 0x7f800000 | (man << 13); }
    else { bits = sign | ((exp + 112) << 23) | (man << 13); }
    float f; memcpy(&f, &bits, 4); return f;
}

typedef void (*dot_fn)(int, float *, size_t, const void *, size_t, const void *, size_t, int);
typedef void (*quant_fn)(const float *, void *, int64_t);

int main(void) {
    for (int i = 0; i < (1 << 16); i++) ggml_table_f32_f16[i] = f16_to_f32((uint16_t) i);

    struct { const char * name; int qk; size_t wb; dot_fn dot; quant_fn q; size_t ab; } types[] = {
        { "Q4_0",  32,  18, ggml_vec_dot_q4_0_q8_0, (quant_fn) quantize_row_q8_0_ref,  34 },
        { "Q4_1",  32,  20, ggml_vec_dot_q4_1_q8_1, (quant_fn) quantize_row_q8_1_ref,  36 },
        { "Q5_0",  32,  22, ggml_vec_dot_q5_0_q8_0, (quant_fn) quantize_row_q8_0_ref,  34 },
        { "Q5_1",  32,  24, ggml_vec_dot_q5_1_q8_1, (quant_fn) quantize_row_q8_1_ref,  36 },
        { "Q8_0",  32,  34, ggml_vec_dot_q8_0_q8_0, (quant_fn) quantize_row_q8_0_ref,  34 },
        { "Q2_K", 256,  84, ggml_vec_dot_q2_K_q8_K, (quant_fn) quantize_row_q8_K_ref, 292 },
        { "Q3_K", 256, 110, ggml_vec_dot_q3_K_q8_K, (quant_fn) quantize_row_q8_K_ref, 292 },
        { "Q4_K", 256, 144, ggml_vec_dot_q4_K_q8_K, (quant_fn) quantize_row_q8_K_ref, 292 },
        { "Q5_K", 256, 176, ggml_vec_dot_q5_K_q8_K, (quant_fn) quantize_row_q8_K_ref, 292 },
        { "Q6_K", 256, 210, ggml_vec_dot_q6_K_q8_K, (quant_fn) quantize_row_q8_K_ref, 292 },
    };
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        char path[64];
        snprintf(path, sizeof(path), "blocks_%s.bin", types[t].name);
        FILE * f = fopen(path, "rb");
        if (!f) { perror(path); return 1; }
        uint8_t w[1 << 16];
        size_t wbytes = fread(w, 1, sizeof(w), f);
        fclose(f);
        size_t nb = wbytes / types[t].wb;
        int n = (int) nb * types[t].qk;
        float * x = malloc(n * sizeof(float));
        for (int i = 0; i < n; i++) x[i] = 0.25f + 1.5f * sinf(0.37f * i) * cosf(0.011f * i * i);
        uint8_t * a = calloc(nb, types[t].ab);
        types[t].q(x, a, n);
        float s = NAN;
        types[t].dot(n, &s, 0, w, 0, a, 0, 1);
        snprintf(path, sizeof(path), "vecdot_%s.act", types[t].name);
        f = fopen(path, "wb"); fwrite(a, types[t].ab, nb, f); fclose(f);
        snprintf(path, sizeof(path), "vecdot_%s.f32", types[t].name);
        f = fopen(path, "wb"); fwrite(&s, 4, 1, f); fclose(f);
        printf("%s n=%d dot=%.9g\n", types[t].name, n, s);
        free(x); free(a);
    }
    return 0;
}
