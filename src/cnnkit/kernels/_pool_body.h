/* Max pooling for one element type (included twice by _native.c, like _conv_body.h).
 *
 * Arrays are (A, H, W, B) with B innermost: NHWC (A = N, B = C) or batch-minor (A = C, B = N),
 * the same arithmetic either way. Padding counts as -inf without being stored: a padded tap never
 * wins, and tap 0 starts each window (a padded tap 0 starts it at -inf), so the result, the NaN
 * propagation (as np.maximum) and the tie rule (a later tap must be strictly greater, PyTorch's
 * first maximum) are those of the NumPy kernel in cnnkit.kernels.pool.
 */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

/* y (A, H', W', B) = max over each window (written at y_off + a·y_a + r·y_r + q·B: a dense array or
 * the interior of a frame); argmax (dense (A, H', W', B), uint8: tap i·FW + j), or NULL. */
static void FN(maxpool_forward)(const PoolGeom *g, const T *x, T *y, unsigned char *argmax) {
    const size_t nb = g->b;
    for (int a = 0; a < g->a; a++)
        for (int r = 0; r < g->ho; r++)
            for (int q = 0; q < g->wo; q++) {
                const size_t o = (((size_t)a * g->ho + r) * g->wo + q) * nb;
                T *yo = y + g->y_off + a * g->y_a + r * g->y_r + (size_t)q * nb;
                unsigned char *am = argmax ? argmax + o : NULL;
                for (int i = 0; i < g->fh; i++) {
                    const int h = r * g->sh + i - g->pt;
                    for (int j = 0; j < g->fw; j++) {
                        const int w = q * g->sw + j - g->pl;
                        const int k = i * g->fw + j;
                        const int inside = h >= 0 && h < g->h && w >= 0 && w < g->w;
                        const T *xi = inside ? x + (((size_t)a * g->h + h) * g->w + w) * nb : NULL;
                        if (k == 0) {
                            for (size_t e = 0; e < nb; e++) yo[e] = inside ? xi[e] : -(T)INFINITY;
                            if (am) memset(am, 0, nb);
                        } else if (inside && am) {
                            for (size_t e = 0; e < nb; e++) {
                                const T v = xi[e], m = yo[e];
                                am[e] = v > m ? (unsigned char)k : am[e];
                                yo[e] = (v > m || v != v) ? v : m;
                            }
                        } else if (inside) {
                            for (size_t e = 0; e < nb; e++) {
                                const T v = xi[e], m = yo[e];
                                yo[e] = (v > m || v != v) ? v : m;
                            }
                        }
                    }
                }
            }
}

/* dx (A, H, W, B) = each dy routed to its window's argmax (zeros elsewhere; padding dropped). Windows
 * that tile the input are written once each, with no zeroing pass; others add into zeros. */
static void FN(maxpool_backward)(const PoolGeom *g, const T *dy, const unsigned char *argmax, T *dx) {
    const size_t nb = g->b;
    /* windows that tile the input exactly (e.g. 2×2, stride 2, even sizes) write every input once */
    const int tiling = g->sh == g->fh && g->sw == g->fw && g->pt == 0 && g->pl == 0 && g->ho * g->fh == g->h &&
                       g->wo * g->fw == g->w;
    if (!tiling) memset(dx, 0, sizeof(T) * (size_t)g->a * g->h * g->w * nb);
    for (int a = 0; a < g->a; a++)
        for (int r = 0; r < g->ho; r++)
            for (int q = 0; q < g->wo; q++) {
                const size_t o = (((size_t)a * g->ho + r) * g->wo + q) * nb;
                const T *d = dy + o;
                const unsigned char *am = argmax + o;
                for (int i = 0; i < g->fh; i++) {
                    const int h = r * g->sh + i - g->pt;
                    if (h < 0 || h >= g->h) continue;
                    for (int j = 0; j < g->fw; j++) {
                        const int w = q * g->sw + j - g->pl;
                        if (w < 0 || w >= g->w) continue;
                        const unsigned char k = (unsigned char)(i * g->fw + j);
                        T *xo = dx + (((size_t)a * g->h + h) * g->w + w) * nb;
                        if (tiling)
                            for (size_t e = 0; e < nb; e++) xo[e] = am[e] == k ? d[e] : (T)0;
                        else
                            for (size_t e = 0; e < nb; e++) xo[e] += am[e] == k ? d[e] : (T)0;
                    }
                }
            }
}

#undef FN
#undef CAT
#undef CAT_
