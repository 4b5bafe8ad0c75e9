/* The bin sums of LAT exact's windowed solve (benchmark/quant/fused_lat.py) in one read of w and d
   (lat_bins), of w and v (lat_bins_v: D = sqrt(v) + eps), or in the LAQ step's pass that also
   does the Adam update (lat_step); lat_curvature writes that D.

   Per bin of |w| (below edges[0], between two edges, at least edges[LAT_EDGES - 1]) the sums of
   d|w| and d; the largest |w| and d; and the values inside the window
   [edges[LAT_BELOW], edges[LAT_BELOW + 1]) with their d, in index order. The bin sums leave the
   window's bin out (its candidates are summed on the host), so the sums come in the layout of
   fused_lat._bin_sums: (d|w|, d) per outer bin bottom to top, then max |w| and max d.

   Rounding, which the proof allows for (fused_lat._native_error): each of the LANES lanes of a
   vector accumulates one value in LANES of a chunk of CHUNK values in float32, in index order
   (CHUNK / LANES - 1 additions, so a relative error below that many units of float32), and the
   lanes and chunks are added in double. The code relies on IEEE arithmetic in the order written:
   build it without -ffast-math or -fassociative-math, and with -ffp-contract=off.

   The compiler picks the instructions: GCC's and clang's vector extensions, as wide as the
   machine's (the build is for its own CPU: -march=native). */

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef LAT_EDGES
#error "LAT_EDGES (the number of bin edges) must be defined"
#endif
#ifndef LAT_BELOW
#error "LAT_BELOW (the index of the window's lower edge) must be defined"
#endif

#define BINS (LAT_EDGES + 1)
#if defined(LAT_LANES)
#define LANES LAT_LANES
#elif defined(__AVX512F__)
#define LANES 16 /* the LAQ step of 4M values: 8.1 ms, against 11.5 with 8 lanes (sums alone: 4.5, 4.1) */
#elif defined(__AVX__) || defined(__ARM_NEON)
#define LANES 8
#else
#define LANES 4
#endif
#define CHUNK (64 * LANES)

typedef float vfloat __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(LANES * sizeof(int32_t))));

int lat_bins_layout(void) { return LAT_EDGES * 100 + LAT_BELOW * 10 + 1; }

int64_t lat_bins_chunk(void) { return CHUNK; }

int64_t lat_bins_lanes(void) { return LANES; }

/* The pass over n values: with `update` 1, first LossAwareAdam's update of m, v and w in
   place (benchmark/quant/fused.py's _update, the same operations in the same order:
   m + c1 (g - m), v beta2 + (g g) c2, D = sqrt(v) + eps, clamp(w + step (m / D), -1, 1); D is
   not stored), then the sums of the new w and D; with 2, the sums of w and D = sqrt(v) + eps;
   with 0, the sums of w and d. Returns the number of window values;
   at most `cap` of them are written to cand and dcand. */
static inline __attribute__((always_inline)) int64_t
pass(const int update, float *w, const float *d, const float *g, float *m, float *v, int64_t n,
     float c1, float beta2, float c2, float step, float eps, const float *edges, double *sums,
     float *cand, float *dcand, int64_t cap) {
    double acc1[BINS] = {0}, acc0[BINS] = {0};
    float amax = 0.0f, dmax = 0.0f;
    int64_t count = 0;
    vfloat e[LAT_EDGES], vamax = {0}, vdmax = {0};
    vint magnitude;
    for (int j = 0; j < LANES; ++j) magnitude[j] = 0x7fffffff;
    for (int k = 0; k < LAT_EDGES; ++k)
        for (int j = 0; j < LANES; ++j) e[k][j] = edges[k];
    const vfloat lo = (vfloat){0} - 1.0f, hi = (vfloat){0} + 1.0f;
    const int64_t whole = n / LANES * LANES;
    for (int64_t start = 0; start < whole; start += CHUNK) {
        const int64_t end = start + CHUNK < whole ? start + CHUNK : whole;
        vfloat p1[BINS], p0[BINS];
        for (int k = 0; k < BINS; ++k) {
            p1[k] = (vfloat){0};
            p0[k] = (vfloat){0};
        }
        for (int64_t i = start; i < end; i += LANES) {
            vfloat wv, dv;
            memcpy(&wv, w + i, sizeof wv);
            if (update == 2) { /* D from v */
                vfloat vv;
                memcpy(&vv, v + i, sizeof vv);
                for (int j = 0; j < LANES; ++j) dv[j] = __builtin_sqrtf(vv[j]);
                dv = dv + eps;
            } else if (update) {
                vfloat gv, mv, vv;
                memcpy(&gv, g + i, sizeof gv);
                memcpy(&mv, m + i, sizeof mv);
                memcpy(&vv, v + i, sizeof vv);
                mv = mv + c1 * (gv - mv);
                vv = vv * beta2 + (gv * gv) * c2;
                for (int j = 0; j < LANES; ++j) dv[j] = __builtin_sqrtf(vv[j]);
                dv = dv + eps;
                wv = wv + step * (mv / dv);
                wv = (vfloat)(((vint)lo & (wv < lo)) | ((vint)wv & ~(wv < lo)));
                wv = (vfloat)(((vint)hi & (wv > hi)) | ((vint)wv & ~(wv > hi)));
                memcpy(m + i, &mv, sizeof mv);
                memcpy(v + i, &vv, sizeof vv);
                memcpy(w + i, &wv, sizeof wv);
            } else {
                memcpy(&dv, d + i, sizeof dv);
            }
            const vfloat a = (vfloat)((vint)wv & magnitude);
            const vfloat da = dv * a;
            vint ge[LAT_EDGES];
            for (int k = 0; k < LAT_EDGES; ++k) ge[k] = a >= e[k];
            for (int k = 0; k < BINS; ++k) {
                const vint in = k == 0 ? ~ge[0]
                                : k == LAT_EDGES ? ge[LAT_EDGES - 1]
                                : ge[k - 1] & ~ge[k];
                p1[k] += (vfloat)((vint)da & in);
                p0[k] += (vfloat)((vint)dv & in);
            }
            vamax = (vfloat)(((vint)a & (a > vamax)) | ((vint)vamax & ~(a > vamax)));
            vdmax = (vfloat)(((vint)dv & (dv > vdmax)) | ((vint)vdmax & ~(dv > vdmax)));
            const vint inside = ge[LAT_BELOW] & ~ge[LAT_BELOW + 1];
            int64_t any = 0;
            for (int j = 0; j < LANES; ++j) any |= inside[j];
            if (any) {
                for (int j = 0; j < LANES; ++j) {
                    if (inside[j]) {
                        if (count < cap) {
                            cand[count] = a[j];
                            dcand[count] = dv[j];
                        }
                        ++count;
                    }
                }
            }
        }
        for (int k = 0; k < BINS; ++k) {
            double t1 = 0.0, t0 = 0.0;
            for (int j = 0; j < LANES; ++j) {
                t1 += p1[k][j];
                t0 += p0[k][j];
            }
            acc1[k] += t1;
            acc0[k] += t0;
        }
    }
    for (int j = 0; j < LANES; ++j) {
        if (vamax[j] > amax) amax = vamax[j];
        if (vdmax[j] > dmax) dmax = vdmax[j];
    }
    for (int64_t i = whole; i < n; ++i) { /* the tail: in double */
        float wi = w[i], dv;
        if (update == 2) {
            dv = __builtin_sqrtf(v[i]) + eps;
        } else if (update) {
            const float gi = g[i];
            const float mi = m[i] + c1 * (gi - m[i]);
            const float vi = v[i] * beta2 + (gi * gi) * c2;
            dv = __builtin_sqrtf(vi) + eps;
            wi = wi + step * (mi / dv);
            wi = wi < -1.0f ? -1.0f : wi;
            wi = wi > 1.0f ? 1.0f : wi;
            m[i] = mi;
            v[i] = vi;
            w[i] = wi;
        } else {
            dv = d[i];
        }
        const float a = fabsf(wi);
        int k = 0;
        while (k < LAT_EDGES && a >= edges[k]) ++k;
        acc1[k] += (double)(dv * a);
        acc0[k] += dv;
        if (a > amax) amax = a;
        if (dv > dmax) dmax = dv;
        if (k == LAT_BELOW + 1) {
            if (count < cap) {
                cand[count] = a;
                dcand[count] = dv;
            }
            ++count;
        }
    }
    int out = 0;
    for (int k = 0; k < BINS; ++k) {
        if (k == LAT_BELOW + 1) continue; /* the window: summed on the host */
        sums[out++] = acc1[k];
        sums[out++] = acc0[k];
    }
    sums[out++] = amax;
    sums[out] = dmax;
    return count;
}

/* The sums of w and d (BLAQ's trial point and backtrack, a fresh quantize). */
int64_t lat_bins(const float *w, const float *d, int64_t n, const float *edges, double *sums,
                 float *cand, float *dcand, int64_t cap) {
    return pass(0, (float *)w, d, 0, 0, 0, n, 0, 0, 0, 0, 0, edges, sums, cand, dcand, cap);
}

/* The sums of w and D = sqrt(v) + eps, D computed as lat_step computes it (not stored). */
int64_t lat_bins_v(const float *w, const float *v, int64_t n, float eps, const float *edges,
                   double *sums, float *cand, float *dcand, int64_t cap) {
    return pass(2, (float *)w, 0, 0, 0, (float *)v, n, 0, 0, 0, 0, eps, edges, sums, cand, dcand,
                cap);
}

/* The LAQ step: the update of m, v and w in place, then the sums of the new w and D. */
int64_t lat_step(const float *g, float *m, float *v, float *w, int64_t n, float c1, float beta2,
                 float c2, float step, float eps, const float *edges, double *sums, float *cand,
                 float *dcand, int64_t cap) {
    return pass(1, w, 0, g, m, v, n, c1, beta2, c2, step, eps, edges, sums, cand, dcand, cap);
}

/* D = sqrt(v) + eps into d, rounded as lat_step's (the curvature after a windowed miss). */
void lat_curvature(const float *v, int64_t n, float eps, float *d) {
    for (int64_t i = 0; i < n; ++i) d[i] = __builtin_sqrtf(v[i]) + eps;
}
