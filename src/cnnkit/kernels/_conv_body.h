/* Direct stride-1 convolution in batch-minor (C, H, W, N) memory, for one element type.
 *
 * Included twice by _native.c, with T (float or double), V (a GCC vector of T), VL (its length)
 * and SFX (a name suffix) defined. See _native.c for the layout and the blocking.
 */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

static inline V FN(loadv)(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(storev)(T *p, V v) { memcpy(p, &v, sizeof v); }
static inline T FN(hsum)(V v) {
    T s = 0;
    for (int i = 0; i < VL; i++) s += v[i];
    return s;
}

/* Forward micro-kernel: output rows k0..k0+KB-1 (one filter each), NV vectors of the span from s.
 * xs points at x[0, r, 0, 0] + s; ys at y[k0, r, 0, 0] + s. Per step of the reduction: NV vector
 * loads, KB broadcasts, KB·NV FMAs (24 accumulators in the main blocks: 8 × 3, or 6 × 4 when
 * there are at most 6 filters; measured against 12 × 2 on one core, CIFAR-net's convs ran 3–9 %
 * and LeNet-5's dx with 6 filters 60 % faster). When the rows one block reads do not fit in the
 * L1 cache (g->prefetch), each step prefetches the rows FWD_PREFETCH_ROWS steps ahead: the table
 * of offsets is a pattern the hardware cannot guess (CIFAR-net's convs 9–15 % faster; convs whose
 * rows fit, LeNet-5's, ran 3–6 % slower with it, so they go without). */
#define FWD_MK(KB, NV)                                                                              \
static inline void FN(fwd_##KB##_##NV)(const ConvGeom *g, const size_t *off, const T *xs, const T *w, \
                                        int k0, const T *b, T *ys) {                                 \
    V acc[KB][NV];                                                                                   \
    for (int kk = 0; kk < KB; kk++) {                                                                \
        T init = b ? b[k0 + kk] : (T)0;                                                              \
        for (int v = 0; v < NV; v++) acc[kk][v] = (V){0} + init;                                     \
    }                                                                                                \
    const int taps = g->fh * g->fw * g->c;                                                           \
    const T *wp = w + k0;                                                                            \
    for (int q = 0; q < taps; q++, wp += g->k) { /* one flat loop over the (i, j, c) rows */        \
        const T *xp = xs + off[q];                                                                   \
        if (g->prefetch && q + FWD_PREFETCH_ROWS < taps) /* rows ahead, from L2 into L1 */          \
            for (int v = 0; v < NV; v++) __builtin_prefetch(xs + off[q + FWD_PREFETCH_ROWS] + v * VL, 0, 3); \
        V xv[NV];                                                                                    \
        for (int v = 0; v < NV; v++) xv[v] = FN(loadv)(xp + v * VL);                                 \
        for (int kk = 0; kk < KB; kk++) {                                                            \
            T wv = wp[kk];                                                                           \
            for (int v = 0; v < NV; v++) acc[kk][v] += xv[v] * wv;                                   \
        }                                                                                            \
    }                                                                                                \
    for (int kk = 0; kk < KB; kk++)                                                                  \
        for (int v = 0; v < NV; v++) {                                                               \
            V a = acc[kk][v];                                                                        \
            if (g->relu) a = (V)((VI)a & ~(a <= (T)0)); /* max(a, 0), NaN kept */                    \
            FN(storev)(ys + (size_t)kk * g->out_chan + v * VL, a);                                     \
        }                                                                                            \
}

FWD_MK(8, 3)
FWD_MK(12, 2)
FWD_MK(8, 2)
FWD_MK(4, 2)
FWD_MK(2, 2)
FWD_MK(1, 2)
FWD_MK(6, 4)
FWD_MK(8, 4) /* named by FWD_KLOOP(6, 4)'s 8-filter step, which KB = 6 never takes */
FWD_MK(8, 1)
FWD_MK(4, 4)
FWD_MK(4, 3)
FWD_MK(4, 1)
FWD_MK(2, 4)
FWD_MK(2, 3)
FWD_MK(2, 1)
FWD_MK(1, 4)
FWD_MK(1, 3)
FWD_MK(1, 1)

/* The last S % VL values of a span: plain loops. */
static void FN(fwd_scalar)(const ConvGeom *g, const T *xs, const T *w, const T *b, T *ys, int count) {
    for (int k = 0; k < g->k; k++) {
        for (int e = 0; e < count; e++) {
            T a = b ? b[k] : (T)0;
            for (int i = 0; i < g->fh; i++)
                for (int j = 0; j < g->fw; j++) {
                    const T *xp = xs + (size_t)i * g->dh * g->row_x + (size_t)j * g->dw * g->n + e;
                    const T *wp = w + ((size_t)(i * g->fw + j) * g->c) * g->k + k;
                    for (int c = 0; c < g->c; c++) a += xp[(size_t)c * g->chan_x] * wp[(size_t)c * g->k];
                }
            if (g->relu && a <= 0) a = 0; /* NaN kept, as in the vector path */
            ys[(size_t)k * g->out_chan + e] = a;
        }
    }
}

/* Filters k0… in blocks of KB (then 8 when KB > 8, 4, 2, 1: every count left over) for NV vectors
 * of the span from xs. */
#define FWD_KLOOP(KB, NV)                                                                           \
    do {                                                                                             \
        int k0 = 0;                                                                                  \
        for (; k0 + KB <= g->k; k0 += KB) FN(fwd_##KB##_##NV)(g, off, xs, w, k0, b, ys + (size_t)k0 * g->out_chan); \
        if (KB > 8 && k0 + 8 <= g->k) { FN(fwd_8_##NV)(g, off, xs, w, k0, b, ys + (size_t)k0 * g->out_chan); k0 += 8; } \
        if (k0 + 4 <= g->k) { FN(fwd_4_##NV)(g, off, xs, w, k0, b, ys + (size_t)k0 * g->out_chan); k0 += 4; } \
        if (k0 + 2 <= g->k) { FN(fwd_2_##NV)(g, off, xs, w, k0, b, ys + (size_t)k0 * g->out_chan); k0 += 2; } \
        if (k0 + 1 <= g->k) { FN(fwd_1_##NV)(g, off, xs, w, k0, b, ys + (size_t)k0 * g->out_chan); k0 += 1; } \
    } while (0)

/* Output rows r0…r1-1 of the forward, row r written at y + out_off + (r - r0)·out_row (filter k
 * at + k·out_chan); `off` is the table of (i, j, c) row offsets. */
static void FN(forward_rows)(const ConvGeom *g, const size_t *off, const T *x, const T *w, const T *b, T *y, int r0,
                             int r1) {
    const size_t span = (size_t)g->wo * g->n;
    for (int r = r0; r < r1; r++) {
        const T *xr = x + (size_t)r * g->row_x;
        T *yr = y + g->out_off + (size_t)(r - r0) * g->out_row;
        size_t s = 0;
        if (g->k <= 6) /* few filters: 6 × 4 vectors (LeNet's conv1, and its conv2's dx) */
            for (; s + 4 * VL <= span; s += 4 * VL) {
                const T *xs = xr + s;
                T *ys = yr + s;
                FWD_KLOOP(6, 4);
            }
        else /* 8 filters × 3 vectors */
            for (; s + 3 * VL <= span; s += 3 * VL) {
                const T *xs = xr + s;
                T *ys = yr + s;
                FWD_KLOOP(8, 3);
            }
        if (g->k > 6 && s + 2 * VL <= span) { /* a 2-vector tail: 12 filters × 2 vectors */
            const T *xs = xr + s;
            T *ys = yr + s;
            FWD_KLOOP(12, 2);
            s += 2 * VL;
        }
        for (; s + VL <= span; s += VL) {
            const T *xs = xr + s;
            T *ys = yr + s;
            FWD_KLOOP(8, 1);
        }
        if (s < span) FN(fwd_scalar)(g, xr + s, w, b, yr + s, (int)(span - s));
    }
}

/* The offsets of the (i, j, c) rows, and whether to prefetch them (a block's rows, NV = 3 or 4
 * vectors each, overflow 32 KiB); NULL when out of memory. */
static size_t *FN(row_offsets)(ConvGeom *g) {
    size_t *off = malloc(sizeof(size_t) * g->fh * g->fw * g->c);
    if (!off) return NULL;
    g->prefetch = (size_t)g->fh * g->fw * g->c * (g->k <= 6 ? 4 : 3) * VBYTES > (32u << 10);
    for (int i = 0; i < g->fh; i++)
        for (int j = 0; j < g->fw; j++)
            for (int c = 0; c < g->c; c++)
                off[((size_t)i * g->fw + j) * g->c + c] = (size_t)c * g->chan_x + (size_t)i * g->dh * g->row_x
                                                          + (size_t)j * g->dw * g->n;
    return off;
}

/* y (K, H', W', N) = x (C, Hp, Wp, N) ⋆ w (FH, FW, C, K) + b, optionally max(·, 0). Returns -1
 * when the table of row offsets cannot be allocated. */
static int FN(conv_forward)(const ConvGeom *g, const T *x, const T *w, const T *b, T *y) {
    ConvGeom gp = *g;
    size_t *off = FN(row_offsets)(&gp);
    if (!off) return -1;
    FN(forward_rows)(&gp, off, x, w, b, y, 0, g->ho);
    free(off);
    return 0;
}

/* The forward followed by a 2 × 2, stride-2 max pooling (inference): rows 2p and 2p + 1 of the
 * convolution go to a two-row scratch block, and only their pooled row p is written to y, at
 * out_off + k·out_chan + p·out_row (H' and W' even). The maximum propagates NaN, as np.maximum. */
static int FN(conv_forward_pool2)(const ConvGeom *g, const T *x, const T *w, const T *b, T *y) {
    const size_t span = (size_t)g->wo * g->n, n = g->n;
    ConvGeom gp = *g; /* the convolution's rows go to the scratch block: filter k at 2·span */
    size_t *off = FN(row_offsets)(&gp);
    T *rows = malloc(sizeof(T) * 2 * span * g->k);
    if (!off || !rows) {
        free(off); free(rows);
        return -1;
    }
    gp.out_chan = 2 * span, gp.out_row = span, gp.out_off = 0;
    for (int p = 0; p < g->ho / 2; p++) {
        FN(forward_rows)(&gp, off, x, w, b, rows, 2 * p, 2 * p + 2);
        for (int k = 0; k < g->k; k++) {
            const T *r0 = rows + (size_t)k * 2 * span, *r1 = r0 + span;
            T *yp = y + g->out_off + (size_t)k * g->out_chan + (size_t)p * g->out_row;
            for (int q = 0; q < g->wo / 2; q++)
                for (size_t e = 0; e < n; e++) {
                    const size_t a = 2 * q * n + e;
                    T m = r0[a], v;
                    v = r0[a + n]; m = (v > m || v != v) ? v : m;
                    v = r1[a]; m = (v > m || v != v) ? v : m;
                    v = r1[a + n]; m = (v > m || v != v) ? v : m;
                    yp[q * n + e] = m;
                }
        }
    }
    free(off); free(rows);
    return 0;
}

/* Weight-gradient micro-kernel: dw[i, j, c0..c0+CB-1, k0..k0+KB-1] += Σ over rows r0..r1-1 and the
 * span of x[c, r + i·DH, j·DW·N + s] · dy[k, r, s]. */
#define DW_MK(CB, KB)                                                                               \
static inline void FN(dw_##CB##_##KB)(const ConvGeom *g, const T *x, const T *dy, int r0, int r1,   \
                                       int i, int j, int c0, int k0, T *dw) {                        \
    const size_t span = (size_t)g->wo * g->n;                                                        \
    const size_t full = span - span % VL;                                                            \
    V acc[CB][KB];                                                                                   \
    T tail[CB][KB];                                                                                  \
    for (int cc = 0; cc < CB; cc++)                                                                  \
        for (int kk = 0; kk < KB; kk++) { acc[cc][kk] = (V){0}; tail[cc][kk] = 0; }                  \
    for (int r = r0; r < r1; r++) {                                                                  \
        const T *xr = x + (size_t)c0 * g->chan_x + (size_t)(r + i * g->dh) * g->row_x               \
                      + (size_t)j * g->dw * g->n;                                                    \
        const T *dr = dy + g->dy_off + (size_t)k0 * g->dy_chan + (size_t)r * g->dy_row;              \
        for (size_t s = 0; s < full; s += VL) {                                                      \
            V xv[CB], dv[KB];                                                                        \
            for (int cc = 0; cc < CB; cc++) xv[cc] = FN(loadv)(xr + cc * g->chan_x + s);             \
            for (int kk = 0; kk < KB; kk++) dv[kk] = FN(loadv)(dr + kk * g->dy_chan + s);            \
            for (int cc = 0; cc < CB; cc++)                                                          \
                for (int kk = 0; kk < KB; kk++) acc[cc][kk] += xv[cc] * dv[kk];                      \
        }                                                                                            \
        for (size_t s = full; s < span; s++)                                                         \
            for (int cc = 0; cc < CB; cc++)                                                          \
                for (int kk = 0; kk < KB; kk++)                                                      \
                    tail[cc][kk] += xr[cc * g->chan_x + s] * dr[kk * g->dy_chan + s];                \
    }                                                                                                \
    T *out = dw + ((size_t)(i * g->fw + j) * g->c + c0) * g->k + k0;                                 \
    for (int cc = 0; cc < CB; cc++)                                                                  \
        for (int kk = 0; kk < KB; kk++) out[(size_t)cc * g->k + kk] += FN(hsum)(acc[cc][kk]) + tail[cc][kk]; \
}

DW_MK(4, 4)
DW_MK(4, 2)
DW_MK(4, 1)
DW_MK(2, 4)
DW_MK(2, 2)
DW_MK(2, 1)
DW_MK(1, 4)
DW_MK(1, 2)
DW_MK(1, 1)

#define DW_KLOOP(CB, KSTART)                                                                        \
    do {                                                                                             \
        int k0 = KSTART;                                                                             \
        for (; k0 + 4 <= g->k; k0 += 4) FN(dw_##CB##_4)(g, x, dy, r0, r1, i, j, c0, k0, dw);         \
        if (k0 + 2 <= g->k) { FN(dw_##CB##_2)(g, x, dy, r0, r1, i, j, c0, k0, dw); k0 += 2; }        \
        if (k0 + 1 <= g->k) { FN(dw_##CB##_1)(g, x, dy, r0, r1, i, j, c0, k0, dw); k0 += 1; }        \
    } while (0)

/* Transpose a VL × VL tile held as VL row vectors, in log2(VL) stages (Eklundh): at block size h the
 * rows i and i + h (i & h == 0) swap their odd h-blocks for the other's even ones. */
static inline void FN(tile_transpose)(V *rows) {
#pragma GCC unroll 8
    for (int h = VL / 2; h >= 1; h /= 2) {
        VI lo, hi;
        for (int p = 0; p < VL; p++) {
            const int m = p / h, within = p % h;
            lo[p] = m % 2 == 0 ? m * h + within : VL + (m - 1) * h + within;
            hi[p] = m % 2 == 0 ? (m + 1) * h + within : VL + m * h + within;
        }
#pragma GCC unroll 16
        for (int i = 0; i < VL; i++) {
            if (i & h) continue;
            V a = rows[i], b = rows[i + h];
            rows[i] = __builtin_shuffle(a, b, lo);
            rows[i + h] = __builtin_shuffle(a, b, hi);
        }
    }
}

/* t (cols, rows) = a (rows, cols) with rows `lda` apart; rows a multiple of VL: VL × VL tiles
 * transposed in registers, the last cols % VL columns one value at a time. */
static void FN(transpose)(const T *a, size_t lda, int rows, size_t cols, T *t) {
    size_t c0 = 0;
    for (; c0 + VL <= cols; c0 += VL)
        for (int r0 = 0; r0 < rows; r0 += VL) {
            V tile[VL];
            for (int i = 0; i < VL; i++) tile[i] = FN(loadv)(a + (size_t)(r0 + i) * lda + c0);
            FN(tile_transpose)(tile);
            for (int i = 0; i < VL; i++) FN(storev)(t + (c0 + i) * rows + r0, tile[i]);
        }
    for (; c0 < cols; c0++)
        for (int r = 0; r < rows; r++) t[c0 * rows + r] = a[(size_t)r * lda + c0];
}

/* Weight-gradient micro-kernel vectorised along the filters, for CB (tap, channel) rows at once:
 * out[cc][k0 : k0 + NV·VL] += Σ_s xp[cc][s] · dyt[s, k0 : …], with xp[cc] the input span that row
 * (i, j, c) reads, out[cc] its row of dw, and dyt one output row of dy transposed to
 * (W'·N, K). */
#define DWK_MK(CB, NV)                                                                              \
static inline void FN(dwk_##CB##_##NV)(const T *const *xp, T *const *out, const T *dyt, size_t ldt, \
                                        size_t span, int k0) {                                       \
    V acc[CB][NV];                                                                                   \
    for (int cc = 0; cc < CB; cc++)                                                                  \
        for (int v = 0; v < NV; v++) acc[cc][v] = (V){0};                                            \
    const T *d = dyt + k0;                                                                           \
    for (size_t s = 0; s < span; s++, d += ldt) {                                                    \
        V dv[NV];                                                                                    \
        for (int v = 0; v < NV; v++) dv[v] = FN(loadv)(d + v * VL);                                  \
        for (int cc = 0; cc < CB; cc++) {                                                            \
            T xv = xp[cc][s];                                                                        \
            for (int v = 0; v < NV; v++) acc[cc][v] += dv[v] * xv;                                   \
        }                                                                                            \
    }                                                                                                \
    for (int cc = 0; cc < CB; cc++)                                                                  \
        for (int v = 0; v < NV; v++) {                                                               \
            T *o = out[cc] + k0 + v * VL;                                                            \
            FN(storev)(o, FN(loadv)(o) + acc[cc][v]);                                                \
        }                                                                                            \
}

#define DWK_ROWS (VBYTES == 64 ? 12 : 6) /* rows per block: 2·DWK_ROWS accumulators in registers */
DWK_MK(DWK_ROWS, 2)
DWK_MK(4, 2)
DWK_MK(2, 2)
DWK_MK(1, 2)
DWK_MK(DWK_ROWS, 1)
DWK_MK(4, 1)
DWK_MK(2, 1)
DWK_MK(1, 1)

#define DWK_KLOOP(CB)                                                                               \
    do {                                                                                             \
        int k0 = 0;                                                                                  \
        for (; k0 + 2 * VL <= kv; k0 += 2 * VL) FN(dwk_##CB##_2)(xp + q, op + q, dyt, kv, span, k0); \
        if (k0 + VL <= kv) FN(dwk_##CB##_1)(xp + q, op + q, dyt, kv, span, k0);                      \
    } while (0)

/* dw (FH, FW, C, K) = Σ x-windows · dy. The first K - K mod VL filters are vectorised along the
 * filters, one output row at a time (that row of dy transposed into a (W'·N, K) scratch block),
 * all FH·FW·C (tap, channel) rows in blocks of DWK_ROWS; the rest of the filters (all
 * of them when K < VL) as dot products along the span, over blocks of rows kept in cache.
 * Returns -1 when the scratch memory cannot be allocated. */
static int FN(conv_weight_grad)(const ConvGeom *g, const T *x, const T *dy, T *dw, int rows_per_block) {
    memset(dw, 0, sizeof(T) * (size_t)g->fh * g->fw * g->c * g->k);
    const size_t span = (size_t)g->wo * g->n;
    const int kv = g->k - g->k % VL, rows = g->fh * g->fw * g->c;
    if (kv > 0) {
        T *dyt = malloc(sizeof(T) * span * kv);
        const T **xp = malloc(sizeof(T *) * rows);
        T **op = malloc(sizeof(T *) * rows);
        if (!dyt || !xp || !op) {
            free(dyt); free(xp); free(op);
            return -1;
        }
        for (int i = 0; i < g->fh; i++) /* dw row of each (i, j, c), in dw's own order */
            for (int j = 0; j < g->fw; j++)
                for (int c = 0; c < g->c; c++)
                    op[(i * g->fw + j) * g->c + c] = dw + ((size_t)(i * g->fw + j) * g->c + c) * g->k;
        for (int r = 0; r < g->ho; r++) {
            FN(transpose)(dy + g->dy_off + (size_t)r * g->dy_row, g->dy_chan, kv, span, dyt); /* (K, span) -> (span, K) */
            for (int i = 0; i < g->fh; i++) /* the input span each (i, j, c) row reads for output row r */
                for (int j = 0; j < g->fw; j++)
                    for (int c = 0; c < g->c; c++)
                        xp[(i * g->fw + j) * g->c + c] = x + (size_t)c * g->chan_x + (size_t)(r + i * g->dh) * g->row_x
                                                         + (size_t)j * g->dw * g->n;
            int q = 0;
            for (; q + DWK_ROWS <= rows; q += DWK_ROWS) DWK_KLOOP(DWK_ROWS);
            for (; q + 4 <= rows; q += 4) DWK_KLOOP(4);
            for (; q + 2 <= rows; q += 2) DWK_KLOOP(2);
            for (; q < rows; q++) DWK_KLOOP(1);
        }
        free(dyt); free(xp); free(op);
    }
    if (kv == g->k) return 0;
    for (int r0 = 0; r0 < g->ho; r0 += rows_per_block) {
        int r1 = r0 + rows_per_block < g->ho ? r0 + rows_per_block : g->ho;
        for (int i = 0; i < g->fh; i++)
            for (int j = 0; j < g->fw; j++) {
                int c0 = 0;
                for (; c0 + 4 <= g->c; c0 += 4) DW_KLOOP(4, kv);
                if (c0 + 2 <= g->c) { DW_KLOOP(2, kv); c0 += 2; }
                if (c0 + 1 <= g->c) { DW_KLOOP(1, kv); c0 += 1; }
            }
    }
    return 0;
}

/* Before a stride-1 backward, in one pass over dy (K, H', W', N): dym = dy·[y > 0] (the fused
 * ReLU's mask; y may be NULL: no mask; y's rows sit at (yt, yl) of a (K, hy, wy, N) array, which is
 * (K, H', W', N) itself when y is dense), db[k] = Σ dym[k] (db may be NULL), and z (K, Hz, Wz, N) =
 * dym placed at row `top`, column `left` of zeros (cropped where it falls outside; z may be NULL).
 * dym may be NULL when only z or db is wanted. */
static void FN(backward_prep)(const T *dy, const T *y, T *dym, T *z, T *db, int k_count, int ho, int wo, int n,
                              int hz, int wz, int top, int left, int hy, int wy, int yt, int yl) {
    const size_t span = (size_t)wo * n, zrow = (size_t)wz * n;
    /* the columns of a dy row that land inside a z row: c0 <= column < c1 */
    const int c0 = left < 0 ? -left : 0, c1 = (wz - left < wo) ? wz - left : wo;
    for (int k = 0; k < k_count; k++) {
        V acc = (V){0};
        T tail = 0;
        for (int r = 0; r < ho; r++) {
            const size_t o = ((size_t)k * ho + r) * span;
            const T *d = dy + o;
            /* y's row: dense like dy, or in the interior of a (K, hy, wy, N) frame at (yt, yl) */
            const T *yr = y ? y + (((size_t)k * hy + r + yt) * wy + yl) * n : NULL;
            T *m = dym ? dym + o : NULL;
            /* z's row that dy's row r lands in; dy's column q goes to its column q + left */
            T *zr = NULL;
            if (z && r + top >= 0 && r + top < hz && c1 > c0) zr = z + ((size_t)k * hz + r + top) * zrow;
            const ptrdiff_t shift = (ptrdiff_t)left * n;
            size_t s = 0;
            for (; s + VL <= span; s += VL) {
                V v = FN(loadv)(d + s);
                if (yr) v = (V)((VI)v & (FN(loadv)(yr + s) > (T)0));
                acc += v;
                if (m) FN(storev)(m + s, v);
                if (zr && s >= (size_t)c0 * n && s + VL <= (size_t)c1 * n) FN(storev)(zr + (ptrdiff_t)s + shift, v);
                else if (zr)
                    for (int e = 0; e < VL; e++)
                        if (s + e >= (size_t)c0 * n && s + e < (size_t)c1 * n) zr[(ptrdiff_t)(s + e) + shift] = v[e];
            }
            for (; s < span; s++) {
                T v = d[s];
                if (yr && !(yr[s] > 0)) v = 0;
                tail += v;
                if (m) m[s] = v;
                if (zr && s >= (size_t)c0 * n && s < (size_t)c1 * n) zr[(ptrdiff_t)s + shift] = v;
            }
        }
        if (db) db[k] = FN(hsum)(acc) + tail;
        if (!z) continue;
        for (int zr = 0; zr < hz; zr++) { /* the zeros around the placed rows */
            T *row = z + ((size_t)k * hz + zr) * zrow;
            int r = zr - top;
            if (r < 0 || r >= ho || c1 <= c0) {
                memset(row, 0, sizeof(T) * zrow);
                continue;
            }
            memset(row, 0, sizeof(T) * (size_t)(left + c0) * n);
            memset(row + (size_t)(left + c1) * n, 0, sizeof(T) * (zrow - (size_t)(left + c1) * n));
        }
    }
}

#undef FN
#undef CAT
#undef CAT_
