/* The compiled zig-zag meter's pass over a layer of +-1 levels (benchmark/quant/zigzag.py, the
   "binary" kind of _layer): the packed state updated in place as zigzag._advance updates it
   (the same operations on the values the meter's promise allows, below: the same bits), and
   four counts from which the meter's per-step sums follow exactly (zigzag._binary_sums):

     out[0]  weights whose level changed in this step (b1 != b0);
     out[1]  weights whose level the step before changed (the state's marks: |s| > 2, an
             event, or 0 < |s| < floor, a first change);
     out[2]  weights changed in both steps;
     out[3]  oscillation events of this step (|new s| > 2).

   The state holds s = direction * f, or direction * f * scale right after an event (the
   docstring of zigzag.py). The code relies on IEEE arithmetic in the order written: build it
   without -ffast-math and with -ffp-contract=off. The compiler picks the instructions: GCC's
   and clang's vector extensions, as wide as the machine's (-march=native); 16 lanes with
   AVX-512 took 0.41 ns a weight in cache here, 8 lanes 0.47. */

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__) || defined(__ARM_NEON)
#define LANES 8
#else
#define LANES 4
#endif
#define BLOCK ((int64_t)LANES << 16) /* values per run of the int32 lane counters */

typedef float vfloat __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(LANES * sizeof(int32_t))));

/* a where m (all bits set) else b */
#define SELECT(m, a, b) ((vfloat)(((vint)(a) & (m)) | ((vint)(b) & ~(m))))

int zz_layout(void) { return 1; }

int64_t zz_lanes(void) { return LANES; }

/* What the meter's promise of +-1 levels (zigzag.py) lets this pass rely on: every level is -1
   or +1, and a weight whose state is not 0 holds the level of its last change, which is the
   state's direction. Then, with c = (b1 != b0) and s != 0 for "has changed before", zigzag._advance
   comes to: an event is c and s != 0; the new state has |s_new| = 2^-110 at a first change
   (c, s = 0), else the frequency decayed (and raised and scaled by S at an event, else kept at
   least at the floor), with b1's sign (for an unchanged weight b1 is the state's direction),
   and stays 0 where the level never changed. */

/* One value, as the vector loop computes it (the tail). */
static inline void one(const float s, const float b0, const float b1, float *out,
                       const float mu, const float rest, const float floor_, const float first,
                       const float scale, const float inv_scale, int64_t *counts) {
    const int changed = b1 != b0;
    const float mag = fabsf(s);
    const int big = mag > 2.0f, nonzero = mag != 0.0f;
    float freq = big ? mag * inv_scale : mag;
    const int event = changed & nonzero;
    freq = freq * mu + (event ? rest : 0.0f);
    const float kept = event ? freq * scale : (freq < floor_ ? floor_ : freq);
    const float mag_new = changed & !nonzero ? first : kept;
    *out = changed | nonzero ? copysignf(mag_new, b1) : 0.0f;
    const int marked = big | (nonzero & (mag < floor_));
    counts[0] += changed;
    counts[1] += marked;
    counts[2] += changed & marked;
    counts[3] += mag_new > 2.0f;
}

/* The pass over n weights: state in place, the four counts into out. mu is the momentum, rest
   1 - mu (as the meter rounds it), floor_ 2^-100, first 2^-110, scale S and inv_scale 1/S. */
void zz_binary(const float *b0, const float *b1, float *state, int64_t n, float mu, float rest,
               float floor_, float first, float scale, float inv_scale, int64_t *out) {
    int64_t counts[4] = {0, 0, 0, 0};
    const vfloat zero = {0}, mark = zero + 2.0f;
    const vfloat floorv = zero + floor_, firstv = zero + first, restv = zero + rest;
    vint magnitude, sign;
    for (int j = 0; j < LANES; ++j) {
        magnitude[j] = 0x7fffffff;
        sign[j] = INT32_MIN;
    }
    const int64_t whole = n / LANES * LANES;
    for (int64_t start = 0; start < whole; start += BLOCK) {
        const int64_t end = start + BLOCK < whole ? start + BLOCK : whole;
        vint k0 = {0}, k1 = {0}, k2 = {0}, k3 = {0}; /* minus the counts: a true mask is -1 */
        for (int64_t i = start; i < end; i += LANES) {
            vfloat s, x0, x1;
            memcpy(&s, state + i, sizeof s);
            memcpy(&x0, b0 + i, sizeof x0);
            memcpy(&x1, b1 + i, sizeof x1);
            const vint changed = x1 != x0;
            const vfloat mag = (vfloat)((vint)s & magnitude);
            const vint big = mag > mark, nonzero = mag != zero;
            vfloat freq = SELECT(big, mag * inv_scale, mag);
            const vint event = changed & nonzero;
            freq = freq * mu + (vfloat)((vint)restv & event);
            const vfloat kept = SELECT(event, freq * scale, SELECT(freq < floorv, floorv, freq));
            const vfloat mag_new = SELECT(changed & ~nonzero, firstv, kept);
            const vfloat new = (vfloat)(((vint)mag_new | ((vint)x1 & sign)) & (changed | nonzero));
            memcpy(state + i, &new, sizeof new);
            const vint marked = big | (nonzero & (mag < floorv));
            k0 += changed;
            k1 += marked;
            k2 += changed & marked;
            k3 += mag_new > mark;
        }
        for (int j = 0; j < LANES; ++j) {
            counts[0] -= k0[j];
            counts[1] -= k1[j];
            counts[2] -= k2[j];
            counts[3] -= k3[j];
        }
    }
    for (int64_t i = whole; i < n; ++i)
        one(state[i], b0[i], b1[i], state + i, mu, rest, floor_, first, scale, inv_scale, counts);
    for (int k = 0; k < 4; ++k) out[k] = counts[k];
}
