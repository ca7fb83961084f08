/* Winograd F(4x4x4, 3x3x3) convolution of a channels-last float32 box: the kernel of
 * niftyport's `full-winograd` mode (niftyport/inference/winograd.py builds and calls it).
 *
 * Lavin A., Gray S. "Fast Algorithms for Convolutional Neural Networks." CVPR 2016
 * (arXiv:1509.09308), F(4, 3) with interpolation points 0, +-1, +-2 and infinity,
 * nested over the three axes: one output tile of 4x4x4 voxels takes 6x6x6 = 216
 * products per input/output channel pair instead of 27 * 64 = 1728 (8x fewer).
 *
 * For each chunk of TILES tiles, in one core's cache:
 *   1. V[p][t][ci] = (B^T (x) B^T (x) B^T) d_t        (input transform, 216 positions p)
 *   2. M[p][t][co] = sum_ci V[p][t][ci] U[p][ci][co]  (216 small matrix products)
 *   3. y_t         = (A^T (x) A^T (x) A^T) M[.][t]    (output transform, written in place)
 * U (216, cin, cout) is the filter transformed once per model, in float64 (G g G^T).
 *
 * Dilation d: a tile's 6 inputs and 4 outputs along each axis are d voxels apart
 * (NiftyNet's dilated convolution is d^3 ordinary ones on the sub-sampled grids,
 * niftynet/layer/dilatedcontext.py); tiles of each sub-grid phase are enumerated
 * separately.
 *
 * Layouts: x is (X, Y, Z, cin) contiguous (torch's channels_last_3d of (1, cin, X, Y, Z));
 * y is (LX, LY, LZ, cout) contiguous, output voxel (i, j, k) being the 'SAME'
 * convolution of the box at input voxel (ox + i, oy + j, oz + k), zero outside the box.
 * cin and cout are multiples of 16 (one vector of 16 floats: one AVX-512 register,
 * two AVX2 ones; GCC's vector extensions, built for the host with -march=native).
 *
 * Fused around it (a HighRes3DNet residual block is two calls, with no pass of its own for
 * batch norm, ReLU or the residual addition): a pre-activation relu(x * scale + shift) on
 * the input voxels inside the box (the zero padding stays zero, as in relu(bn(x)) padded),
 * and on the output bias, then y * scale + shift, ReLU, + a residual box (see struct fuse).
 *
 * No threads here: the caller runs one call per core on interleaved x tiles.
 */
#include <stdlib.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int i16 __attribute__((vector_size(64)));

/* What is fused around the convolution; NULL pointers: not applied. */
typedef struct {
    const float *pre_scale, *pre_shift;   /* input voxel: relu(x * scale + shift), cin each */
    const float *bias;                    /* output: + bias (cout) ... */
    const float *post_scale, *post_shift; /* ... then * scale + shift (cout) ... */
    int post_relu;                        /* ... then max(., 0) when nonzero ... */
    const float *residual;                /* ... then + residual: (RX, RY, RZ, rc) channels-last, */
    int rx, ry, rz, rc;                   /*     output voxel (0, 0, 0) at residual voxel r_lo, */
    int r_lo[3], c_lo;                    /*     its channels to output channels c_lo .. c_lo + rc */
} fuse;

#define TILES 12      /* tiles per chunk: V and M of 64 channels fit a 2 MB L2 cache */
#define POS 216       /* 6 x 6 x 6 transform positions */
#ifndef SKEW
#define SKEW 16       /* floats between positions in V and M beyond TILES rows: strides */
#endif                /* that are not multiples of 1 KiB keep the 216 rows off one cache set */

static inline v16 load(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline v16 relu(v16 v) { const v16 zero = {0}; return (v16)((i16)v & (v > zero)); }

/* B^T of F(4, 3) applied to 6 vectors d[0], d[s], ..., d[5 s], in place. */
static inline void input_line(v16 *d, int s) {
    v16 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    d[0] = 4.0f * d0 - 5.0f * d2 + d4;
    d[s] = -4.0f * (d1 + d2) + d3 + d4;
    d[2 * s] = 4.0f * (d1 - d2) - d3 + d4;
    d[3 * s] = 2.0f * (d3 - d1) - d2 + d4;
    d[4 * s] = 2.0f * (d1 - d3) - d2 + d4;
    d[5 * s] = 4.0f * d1 - 5.0f * d3 + d5;
}

/* A^T of F(4, 3): 6 vectors m[0], m[s], ..., m[5 s] to 4 outputs o[0], o[t], o[2t], o[3t]. */
static inline void output_line(const v16 *m, int s, v16 *o, int t) {
    v16 m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
    v16 a = m1 + m2, b = m1 - m2, c = m3 + m4, e = m3 - m4;
    o[0] = m0 + a + c;
    o[t] = b + 2.0f * e;
    o[2 * t] = a + 4.0f * c;
    o[3 * t] = b + 8.0f * e + m5;
}

/* Tiles of an output side of n voxels at dilation d: for each phase p < d, the outputs
 * p, p + d, ... in runs of 4, the phases of one run next to each other (their inputs
 * interleave, so neighbouring tiles share cache lines). Fills first[] (first output index)
 * and count[] (<= 4) when given; returns how many tiles there are. */
int wino_tiles(int n, int d, int *first, int *count) {
    int k = 0;
    for (int t = 0; 4 * d * t < n; t++)
        for (int p = 0; p < d; p++) {
            int outs = p < n ? (n - p + d - 1) / d : 0;
            if (4 * t >= outs) continue;
            if (first) { first[k] = p + 4 * d * t; count[k] = outs - 4 * t < 4 ? outs - 4 * t : 4; }
            k++;
        }
    return k;
}

/* Input transform of one tile into column t of V (all cin channels). */
static void transform_in(const float *x, int X, int Y, int Z, int cin,
                         int x0, int y0, int z0, int d, float *V, int t, v16 *tmp,
                         const fuse *f) {
    int xs[6], ys[6], zs[6];
    for (int j = 0; j < 6; j++) {
        int a = x0 + d * (j - 1), b = y0 + d * (j - 1), c = z0 + d * (j - 1);
        xs[j] = (a >= 0 && a < X) ? a : -1;
        ys[j] = (b >= 0 && b < Y) ? b : -1;
        zs[j] = (c >= 0 && c < Z) ? c : -1;
    }
    const v16 zero = {0};
    /* gather: each input voxel's channels at once (contiguous), tmp[g][a][b][c], z pass */
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++) {
            const float *row = (xs[a] < 0 || ys[b] < 0) ? NULL
                             : x + ((size_t)(xs[a] * Y + ys[b]) * Z) * cin;
            for (int g = 0; g < cin; g += 16) {
                v16 *line = tmp + (size_t)(g / 16) * POS + (a * 6 + b) * 6;
                if (!row) {
                    for (int c = 0; c < 6; c++) line[c] = zero;
                    continue;
                }
                for (int c = 0; c < 6; c++)
                    line[c] = zs[c] < 0 ? zero : load(row + (size_t)zs[c] * cin + g);
                if (f->pre_scale) {
                    v16 scale = load(f->pre_scale + g), shift = load(f->pre_shift + g);
                    for (int c = 0; c < 6; c++)
                        line[c] = zs[c] < 0 ? zero : relu(line[c] * scale + shift);
                }
                input_line(line, 1);                                       /* along z */
            }
        }
    for (int g = 0; g < cin; g += 16) {
        v16 *w = tmp + (size_t)(g / 16) * POS;
        for (int a = 0; a < 6; a++)
            for (int c = 0; c < 6; c++) input_line(w + a * 36 + c, 6);     /* along y */
        for (int b = 0; b < 36; b++) input_line(w + b, 36);                 /* along x */
        for (int p = 0; p < POS; p++) store(V + (size_t)p * (TILES * cin + SKEW) + t * cin + g, w[p]);
    }
}

/* Residual channels rg .. rg + 15 of one voxel's rc channels at r, zero outside 0 .. rc - 1
 * (the shortcut zero-padded to the output's channels, as HighResBlock pads it). */
static inline v16 residual(const float *r, int rg, int rc) {
    if (rg >= 0 && rg + 16 <= rc) return load(r + rg);
    float part[16];
    for (int i = 0; i < 16; i++) part[i] = (rg + i >= 0 && rg + i < rc) ? r[rg + i] : 0.0f;
    return load(part);
}

/* Output transform of column t of M, written to the tile's valid voxels of y. */
static void transform_out(const float *M, int cout, int t, float *y, int LY, int LZ,
                          int x0, int y0, int z0, int nx, int ny, int nz, int d,
                          const fuse *f, v16 *tmp) {
    v16 s1[4 * 36], s2[4 * 4 * 6], o[64];
    for (int g = 0; g < cout; g += 16) {
        for (int p = 0; p < POS; p++) tmp[p] = load(M + (size_t)p * (TILES * cout + SKEW) + t * cout + g);
        for (int b = 0; b < 36; b++) output_line(tmp + b, 36, s1 + b, 36);          /* x: 6 -> 4 */
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 6; c++)
                output_line(s1 + i * 36 + c, 6, s2 + i * 24 + c, 6);                /* y: 6 -> 4 */
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                output_line(s2 + i * 24 + j * 6, 1, o + (i * 4 + j) * 4, 1);       /* z: 6 -> 4 */
        if (f->bias) { v16 b = load(f->bias + g); for (int i = 0; i < 64; i++) o[i] += b; }
        if (f->post_scale) {
            v16 scale = load(f->post_scale + g), shift = load(f->post_shift + g);
            for (int i = 0; i < 64; i++) o[i] = o[i] * scale + shift;
        }
        if (f->post_relu)
            for (int i = 0; i < 64; i++) o[i] = relu(o[i]);
        /* residual channel of output channel g; does the residual reach this group? */
        int rg = g - f->c_lo;
        const float *res = (f->residual && rg + 16 > 0 && rg < f->rc) ? f->residual : NULL;
        for (int i = 0; i < nx; i++)
            for (int j = 0; j < ny; j++) {
                int xi = x0 + d * i, yj = y0 + d * j;
                float *row = y + ((size_t)xi * LY + yj) * LZ * cout + g;
                const float *rrow = res ? res + ((size_t)(xi + f->r_lo[0]) * f->ry
                                                 + (yj + f->r_lo[1])) * f->rz * f->rc : NULL;
                for (int k = 0; k < nz; k++) {
                    int zk = z0 + d * k;
                    v16 v = o[(i * 4 + j) * 4 + k];
                    if (rrow) v += residual(rrow + (size_t)(zk + f->r_lo[2]) * f->rc, rg, f->rc);
                    store(row + (size_t)zk * cout, v);
                }
            }
    }
}

/* M[p] (TILES, cout) = V[p] (TILES, cin) @ U[p] (cin, cout), R rows x NV vectors at a time. */
#define PRODUCT(R, NV)                                                                  \
    static void product_##R##_##NV(const float *v, const float *u, float *m,           \
                                   int cin, int cout) {                                \
        for (int r0 = 0; r0 < TILES; r0 += R) {                                        \
            v16 acc[R][NV];                                                            \
            for (int r = 0; r < R; r++)                                                \
                for (int k = 0; k < NV; k++) acc[r][k] = (v16){0};                     \
            for (int ci = 0; ci < cin; ci++) {                                         \
                v16 w[NV];                                                             \
                for (int k = 0; k < NV; k++) w[k] = load(u + (size_t)ci * cout + 16 * k); \
                for (int r = 0; r < R; r++) {                                          \
                    float s = v[(size_t)(r0 + r) * cin + ci];                          \
                    for (int k = 0; k < NV; k++) acc[r][k] += s * w[k];                \
                }                                                                      \
            }                                                                          \
            for (int r = 0; r < R; r++)                                                \
                for (int k = 0; k < NV; k++) store(m + (size_t)(r0 + r) * cout + 16 * k, acc[r][k]); \
        }                                                                              \
    }
PRODUCT(12, 1)
PRODUCT(6, 2)
PRODUCT(6, 3)
PRODUCT(6, 4)

static void products(const float *V, const float *U, float *M, int cin, int cout) {
    for (int p = 0; p < POS; p++) {
        const float *v = V + (size_t)p * (TILES * cin + SKEW), *u = U + (size_t)p * cin * cout;
        float *m = M + (size_t)p * (TILES * cout + SKEW);
        for (int c0 = 0; c0 < cout; c0 += 64) {
            int nv = (cout - c0) / 16 < 4 ? (cout - c0) / 16 : 4;
            switch (nv) {
            case 1: product_12_1(v, u + c0, m + c0, cin, cout); break;
            case 2: product_6_2(v, u + c0, m + c0, cin, cout); break;
            case 3: product_6_3(v, u + c0, m + c0, cin, cout); break;
            default: product_6_4(v, u + c0, m + c0, cin, cout); break;
            }
        }
    }
}

/* The convolution over the x tiles k = x_begin, x_begin + x_step, ... < x_end (of
 * wino_tiles(LX, d)); returns 0, or -1 when out of memory, cin or cout is not a multiple
 * of 16 or the residual's channels do not fit. The residual box must hold every output
 * voxel (the caller checks). */
int wino_conv3d(const float *x, int X, int Y, int Z, int cin, const float *U, int cout,
                const fuse *f, float *y, int ox, int oy, int oz, int LX, int LY, int LZ,
                int d, int x_begin, int x_end, int x_step) {
    if (cin % 16 || cout % 16 || cin <= 0 || cout <= 0 || d < 1) return -1;
    if (f->residual && (f->rc <= 0 || f->c_lo < 0 || f->c_lo + f->rc > cout)) return -1;
    int nx = wino_tiles(LX, d, NULL, NULL), ny = wino_tiles(LY, d, NULL, NULL);
    int nz = wino_tiles(LZ, d, NULL, NULL);
    int *tl = malloc(sizeof(int) * 2 * (size_t)(nx + ny + nz));
    size_t v_size = sizeof(float) * POS * (TILES * (size_t)cin + SKEW);
    float *V = aligned_alloc(64, v_size);
    float *M = aligned_alloc(64, sizeof(float) * POS * (TILES * (size_t)cout + SKEW));
    v16 *tmp = aligned_alloc(64, sizeof(v16) * POS * (size_t)(cin / 16 > 1 ? cin / 16 : 1));
    if (!tl || !V || !M || !tmp) { free(tl); free(V); free(M); free(tmp); return -1; }
    memset(V, 0, v_size);  /* rows of a short last chunk */
    int *fx = tl, *cx = fx + nx, *fy = cx + nx, *cy = fy + ny, *fz = cy + ny, *cz = fz + nz;
    wino_tiles(LX, d, fx, cx);
    wino_tiles(LY, d, fy, cy);
    wino_tiles(LZ, d, fz, cz);
    int ty[TILES], tz[TILES];
    for (int kx = x_begin; kx < x_end; kx += x_step) {
        int n = 0;
        for (int kyz = 0; kyz < ny * nz; kyz++) {
            ty[n] = kyz / nz;
            tz[n] = kyz % nz;
            transform_in(x, X, Y, Z, cin, ox + fx[kx], oy + fy[ty[n]], oz + fz[tz[n]], d, V, n, tmp, f);
            if (++n < TILES && kyz + 1 < ny * nz) continue;
            products(V, U, M, cin, cout);
            for (int t = 0; t < n; t++)
                transform_out(M, cout, t, y, LY, LZ, fx[kx], fy[ty[t]], fz[tz[t]],
                              cx[kx], cy[ty[t]], cz[tz[t]], d, f, tmp);
            n = 0;
        }
    }
    free(tl); free(V); free(M); free(tmp);
    return 0;
}
