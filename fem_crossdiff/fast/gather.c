/* The fast path's matrix fill (fem_crossdiff/fast/assembler.py, CompiledGather): one pass over the scalar CSR
   entries e: K_j[e] = sum over the element entries (c, ab) -> e of sum_q kappa_j[c, q] S[q, ab] for the variable
   fields, K_j[e] = sum T_j[ab] for the constant ones (unit stiffness, mass), then the 2x2 block values
   values[e, :] = sum_j K_j[e] C[j, :]. The contributions of entry e are the columns of row e of
   StructuredQ1.scatter. NVAR and NCONST are defined before this source when it is compiled. */
#include <stdint.h>
/* NVAR variable and NCONST constant fields, fixed at compile time (one build per pair) so that the field
   loops unroll and K stays in registers. */
void fem_crossdiff_gather(int32_t nnz, const int32_t *ptr, const int32_t *idx, const double *kappa,
                          int64_t ncells, const double *stiff, const double *ctab, const double *C,
                          double *values)
{
    for (int32_t e = 0; e < nnz; e++) {
        double K[NVAR + NCONST];
        for (int j = 0; j < NVAR + NCONST; j++)
            K[j] = 0.0;
        for (int32_t t = ptr[e]; t < ptr[e + 1]; t++) {
            const int32_t i = idx[t], ab = i & 15;
            const int64_t c4 = 4 * (int64_t)(i >> 4);
            for (int j = 0; j < NVAR; j++) {
                const double *k = kappa + 4 * ncells * j + c4;
                K[j] += k[0] * stiff[ab] + k[1] * stiff[16 + ab] + k[2] * stiff[32 + ab] + k[3] * stiff[48 + ab];
            }
            for (int j = 0; j < NCONST; j++)
                K[NVAR + j] += ctab[16 * j + ab];
        }
        double *out = values + 4 * (int64_t)e;
        for (int col = 0; col < 4; col++) {
            double acc = 0.0;
            for (int j = 0; j < NVAR + NCONST; j++)
                acc += K[j] * C[4 * j + col];
            out[col] = acc;
        }
    }
}
