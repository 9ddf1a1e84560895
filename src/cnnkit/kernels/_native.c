/* cnnkit.kernels._native: cnnkit's compiled helper — direct stride-1 convolution in batch-minor
 * memory, max pooling (_pool_body.h), and one-pass SGD and Adam steps (_optim_body.h).
 *
 * Layout: x (C, Hp, Wp, N) already padded, w (FH, FW, C, K) (HWIO), y (K, H', W', N), all
 * C-contiguous, float32 or float64. With the batch innermost, output row r of filter k is one
 * contiguous span of W'·N values, and tap (i, j) of channel c contributes to it the contiguous
 * span of input row r + i·DH starting at column j·DW (offset j·DW·N):
 *
 *     y[k, r, :] = b[k] + Σ_{i, j, c} w[i, j, c, k] · x[c, r + i·DH, j·DW·N : j·DW·N + W'·N]
 *
 * so the convolution is a sum of shifted, scaled copies (no im2col matrix is ever made). The
 * forward micro-kernel keeps a block of 8 filters × 3 SIMD vectors of the span (6 × 4 with at
 * most 6 filters; 12 × 2 for a 2-vector tail of the span) in registers and runs the whole FH·FW·C
 * reduction over it (per step: 3 vector loads, 8 broadcasts, 24 FMAs), prefetching the rows ahead.
 * The weight gradient is the matching sum of products
 *
 *     dw[i, j, c, k] = Σ_r x[c, r + i·DH, j·DW·N : …] · dy[k, r, :]
 *
 * computed per output row with dy's row transposed to (W'·N, K), so that the vectors run along the
 * filters: a block of 12 (tap, channel) rows × 2 vectors of filters is kept in registers while the
 * span streams by (per step: 2 vector loads, 12 broadcasts, 24 FMAs). The input gradient at
 * stride 1 is a forward convolution of the zero-padded dy with the flipped kernel
 * (cnnkit.kernels.conv does that with conv_forward, after backward_prep's one pass over dy for
 * the fused ReLU's mask, db and that zero-padded copy).
 *
 * The Python wrappers check every buffer's type, contiguity and size against the geometry before
 * touching memory, and release the GIL while they compute, so batch shards run in parallel threads.
 * Vectors are GCC vector extensions: the compiler emits AVX-512, AVX2 or SSE for the machine the
 * package is built on (setup.py compiles with -march=native).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif

typedef float vf __attribute__((vector_size(VBYTES)));
typedef int vfi __attribute__((vector_size(VBYTES)));
typedef double vd __attribute__((vector_size(VBYTES)));
typedef long long vdi __attribute__((vector_size(VBYTES)));

typedef struct {
    int c, hp, wp, n, fh, fw, k, ho, wo, dh, dw, relu;
    int prefetch; /* set by conv_forward: prefetch the reduction's rows ahead */
    size_t chan_x, row_x, chan_y;
    /* where conv_forward writes y: filter k, row r at out_off + k·out_chan + r·out_row (a dense
     * (K, H', W', N) array, or the interior of a larger zero-bordered one: a frame) */
    size_t out_chan, out_row, out_off;
    /* where conv_weight_grad reads dy: filter k, row r at dy_off + k·dy_chan + r·dy_row (dense, or
     * the interior of a frame such as the zero-padded dy that dx is computed from) */
    size_t dy_chan, dy_row, dy_off;
} ConvGeom;

#define FWD_PREFETCH_ROWS 8

typedef struct {
    int a, h, w, b, fh, fw, sh, sw, pt, pl, ho, wo;
    size_t y_a, y_r, y_off; /* where maxpool_forward writes y (see _pool_body.h) */
} PoolGeom;

#define T float
#define V vf
#define VI vfi
#define VL ((int)(VBYTES / sizeof(float)))
#define SFX _f32
#define SQRT sqrtf
#include "_conv_body.h"
#include "_pool_body.h"
#include "_optim_body.h"
#undef T
#undef V
#undef VI
#undef VL
#undef SFX
#undef SQRT

#define T double
#define V vd
#define VI vdi
#define VL ((int)(VBYTES / sizeof(double)))
#define SFX _f64
#define SQRT sqrt
#include "_conv_body.h"
#include "_pool_body.h"
#include "_optim_body.h"
#undef T
#undef V
#undef VI
#undef VL
#undef SFX
#undef SQRT

/* ------------------------------------------------------------------------------ Python glue */

/* Get a C-contiguous buffer of `obj` holding at least `need` items ('f' or 'd'); NULL obj allowed
 * when `optional`. Returns 0 on success, -1 with an exception set. */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *name, int writable, Py_ssize_t need,
                      char *kind) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_ValueError, "_native: %s must be a C-contiguous%s float32/float64 array", name,
                     writable ? ", writable" : "");
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    char k = (f[0] == 'f' && f[1] == 0 && view->itemsize == 4) ? 'f'
           : (f[0] == 'd' && f[1] == 0 && view->itemsize == 8) ? 'd' : 0;
    if (!k || (*kind && k != *kind)) {
        PyErr_Format(PyExc_ValueError, "_native: %s must be float32 or float64, like the other arrays "
                     "(received format '%s')", name, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    *kind = k;
    if (view->len / view->itemsize < need) {
        PyErr_Format(PyExc_ValueError, "_native: %s holds %zd values; the geometry needs %zd", name,
                     view->len / view->itemsize, need);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The product of `count` sizes (each >= 1) as a Py_ssize_t, or -1 with ValueError on overflow. */
static Py_ssize_t product(int count, ...) {
    va_list sizes;
    va_start(sizes, count);
    Py_ssize_t p = 1;
    int overflow = 0;
    for (int i = 0; i < count; i++) {
        Py_ssize_t v = (Py_ssize_t)va_arg(sizes, int);
        if (v < 1 || __builtin_mul_overflow(p, v, &p)) overflow = 1;
    }
    va_end(sizes);
    if (overflow) {
        PyErr_SetString(PyExc_ValueError, "_native: sizes must be >= 1 and their product must fit in memory");
        return -1;
    }
    return p;
}

static int check_geometry(ConvGeom *g) {
    if (g->c < 1 || g->hp < 1 || g->wp < 1 || g->n < 1 || g->fh < 1 || g->fw < 1 || g->k < 1 || g->ho < 1 ||
        g->wo < 1 || g->dh < 1 || g->dw < 1 || g->ho + (long long)(g->fh - 1) * g->dh > g->hp ||
        g->wo + (long long)(g->fw - 1) * g->dw > g->wp || product(4, g->c, g->hp, g->wp, g->n) < 0 ||
        product(4, g->k, g->ho, g->wo, g->n) < 0 || product(4, g->fh, g->fw, g->c, g->k) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "_native: inconsistent convolution geometry");
        return -1;
    }
    g->row_x = (size_t)g->wp * g->n;
    g->chan_x = (size_t)g->hp * g->row_x;
    g->chan_y = (size_t)g->ho * g->wo * g->n;
    g->out_chan = g->chan_y;
    g->out_row = (size_t)g->wo * g->n;
    g->out_off = 0;
    g->dy_chan = g->chan_y;
    g->dy_row = (size_t)g->wo * g->n;
    g->dy_off = 0;
    return 0;
}

/* Where an (A, H, W, B) array's rows sit: dense, or the interior at (top, left) of a larger
 * (A, Hf, Wf, B) frame (the optional frame arguments; top = left = -1: none). In elements. */
typedef struct {
    size_t chan, row, off;
    Py_ssize_t count; /* the size of the whole (frame) array */
} Place;

static int place_in_frame(Place *p, const char *what, int a, int h, int w, int b, int hf, int wf, int top,
                          int left) {
    if (top == -1 && left == -1) hf = h, wf = w, top = left = 0;
    if (top < 0 || left < 0 || (long long)top + h > hf || (long long)left + w > wf ||
        (p->count = product(4, a, hf, wf, b)) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "_native: the frame of %s must hold its %dx%d rows at (top, left); "
                     "received a %dx%d frame at (%d, %d)", what, h, w, hf, wf, top, left);
        return -1;
    }
    p->row = (size_t)wf * b;
    p->chan = (size_t)hf * p->row;
    p->off = (size_t)top * p->row + (size_t)left * b;
    return 0;
}

/* conv_forward, and with `pooled` conv_forward_pool2 (y then holds the 2 × 2 max-pooled output). */
static PyObject *conv_forward_call(PyObject *args, int pooled) {
    PyObject *ox, *ow, *ob, *oy;
    int hq = 0, wq = 0, qt = -1, ql = -1;
    ConvGeom g = {0};
    if (!PyArg_ParseTuple(args, pooled ? "OOOO(iiii)(iii)(ii)(ii)p|(iiii):conv_forward_pool2"
                                       : "OOOO(iiii)(iii)(ii)(ii)p|(iiii):conv_forward",
                          &ox, &ow, &ob, &oy, &g.c, &g.hp, &g.wp, &g.n, &g.fh, &g.fw, &g.k, &g.ho, &g.wo, &g.dh,
                          &g.dw, &g.relu, &hq, &wq, &qt, &ql))
        return NULL;
    if (check_geometry(&g) < 0) return NULL;
    if (pooled && (g.ho % 2 || g.wo % 2)) {
        PyErr_Format(PyExc_ValueError, "_native: 2x2 pooling needs an even output size; received %dx%d", g.ho, g.wo);
        return NULL;
    }
    Place yp; /* y dense, or in a (K, Hq, Wq, N) frame */
    if (place_in_frame(&yp, "y", g.k, pooled ? g.ho / 2 : g.ho, pooled ? g.wo / 2 : g.wo, g.n, hq, wq, qt, ql) < 0)
        return NULL;
    g.out_chan = yp.chan, g.out_row = yp.row, g.out_off = yp.off;
    Py_ssize_t y_count = yp.count;
    Py_buffer x, w, b, y;
    char kind = 0;
    int has_b = ob != Py_None;
    if (get_buffer(ox, &x, "x", 0, product(4, g.c, g.hp, g.wp, g.n), &kind) < 0) return NULL;
    if (get_buffer(ow, &w, "w", 0, product(4, g.fh, g.fw, g.c, g.k), &kind) < 0) goto fail_x;
    if (has_b && get_buffer(ob, &b, "b", 0, g.k, &kind) < 0) goto fail_w;
    if (get_buffer(oy, &y, "y", 1, y_count, &kind) < 0) goto fail_b;
    int status;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        status = (pooled ? conv_forward_pool2_f32 : conv_forward_f32)(&g, x.buf, w.buf, has_b ? b.buf : NULL, y.buf);
    else
        status = (pooled ? conv_forward_pool2_f64 : conv_forward_f64)(&g, x.buf, w.buf, has_b ? b.buf : NULL, y.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&y);
    if (has_b) PyBuffer_Release(&b);
    PyBuffer_Release(&w);
    PyBuffer_Release(&x);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_b:
    if (has_b) PyBuffer_Release(&b);
fail_w:
    PyBuffer_Release(&w);
fail_x:
    PyBuffer_Release(&x);
    return NULL;
}

static PyObject *py_conv_forward(PyObject *self, PyObject *args) { return conv_forward_call(args, 0); }

static PyObject *py_conv_forward_pool2(PyObject *self, PyObject *args) { return conv_forward_call(args, 1); }

static PyObject *py_conv_weight_grad(PyObject *self, PyObject *args) {
    PyObject *ox, *ody, *odw;
    int rows_per_block, hd = 0, wd = 0, dt = -1, dl = -1;
    ConvGeom g = {0};
    if (!PyArg_ParseTuple(args, "OOO(iiii)(iii)(ii)(ii)i|(iiii):conv_weight_grad", &ox, &ody, &odw, &g.c, &g.hp,
                          &g.wp, &g.n, &g.fh, &g.fw, &g.k, &g.ho, &g.wo, &g.dh, &g.dw, &rows_per_block, &hd, &wd, &dt,
                          &dl))
        return NULL;
    if (check_geometry(&g) < 0) return NULL;
    if (rows_per_block < 1) rows_per_block = 1;
    Place dp; /* dy dense, or in a (K, Hd, Wd, N) frame */
    if (place_in_frame(&dp, "dy", g.k, g.ho, g.wo, g.n, hd, wd, dt, dl) < 0) return NULL;
    g.dy_chan = dp.chan, g.dy_row = dp.row, g.dy_off = dp.off;
    Py_ssize_t dy_count = dp.count;
    Py_buffer x, dy, dw;
    char kind = 0;
    if (get_buffer(ox, &x, "x", 0, product(4, g.c, g.hp, g.wp, g.n), &kind) < 0) return NULL;
    if (get_buffer(ody, &dy, "dy", 0, dy_count, &kind) < 0) goto fail_x;
    if (get_buffer(odw, &dw, "dw", 1, product(4, g.fh, g.fw, g.c, g.k), &kind) < 0) goto fail_dy;
    int status;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        status = conv_weight_grad_f32(&g, x.buf, dy.buf, dw.buf, rows_per_block);
    else
        status = conv_weight_grad_f64(&g, x.buf, dy.buf, dw.buf, rows_per_block);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dw);
    PyBuffer_Release(&dy);
    PyBuffer_Release(&x);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_dy:
    PyBuffer_Release(&dy);
fail_x:
    PyBuffer_Release(&x);
    return NULL;
}

static int pool_geometry(PoolGeom *g) {
    if (g->a < 1 || g->h < 1 || g->w < 1 || g->b < 1 || g->fh < 1 || g->fw < 1 ||
        (long long)g->fh * g->fw > 256 || g->sh < 1 || g->sw < 1 || g->pt < 0 || g->pl < 0 || g->ho < 1 ||
        g->wo < 1 || (long long)(g->ho - 1) * g->sh + g->fh > (long long)g->h + 2LL * g->fh ||
        (long long)(g->wo - 1) * g->sw + g->fw > (long long)g->w + 2LL * g->fw ||
        product(4, g->a, g->h, g->w, g->b) < 0 || product(4, g->a, g->ho, g->wo, g->b) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "_native: inconsistent pooling geometry (at most 256 taps)");
        return -1;
    }
    return 0;
}

/* Get a C-contiguous uint8 buffer of at least `need` bytes. */
static int get_index_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t need) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_ValueError, "_native: argmax must be a C-contiguous%s uint8 array",
                     writable ? ", writable" : "");
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@' || *f == '|') f++;
    if (view->itemsize != 1 || f[0] != 'B' || f[1] != 0 || view->len < need) {
        PyErr_Format(PyExc_ValueError, "_native: argmax must be a C-contiguous uint8 array of %zd values", need);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *py_maxpool_forward(PyObject *self, PyObject *args) {
    PyObject *ox, *oy, *oam;
    PoolGeom g;
    int hq = 0, wq = 0, qt = -1, ql = -1;
    if (!PyArg_ParseTuple(args, "OOO(iiii)(ii)(ii)(ii)(ii)|(iiii):maxpool_forward", &ox, &oy, &oam, &g.a, &g.h,
                          &g.w, &g.b, &g.fh, &g.fw, &g.sh, &g.sw, &g.pt, &g.pl, &g.ho, &g.wo, &hq, &wq, &qt, &ql))
        return NULL;
    if (pool_geometry(&g) < 0) return NULL;
    Py_ssize_t n_in = product(4, g.a, g.h, g.w, g.b), n_out = product(4, g.a, g.ho, g.wo, g.b);
    Place yp; /* y dense, or in an (A, Hq, Wq, B) frame */
    if (place_in_frame(&yp, "y", g.a, g.ho, g.wo, g.b, hq, wq, qt, ql) < 0) return NULL;
    g.y_a = yp.chan, g.y_r = yp.row, g.y_off = yp.off;
    Py_ssize_t n_y = yp.count;
    Py_buffer x, y, am;
    char kind = 0;
    int has_am = oam != Py_None;
    if (get_buffer(ox, &x, "x", 0, n_in, &kind) < 0) return NULL;
    if (get_buffer(oy, &y, "y", 1, n_y, &kind) < 0) goto fail_x;
    if (has_am && get_index_buffer(oam, &am, 1, n_out) < 0) goto fail_y;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        maxpool_forward_f32(&g, x.buf, y.buf, has_am ? am.buf : NULL);
    else
        maxpool_forward_f64(&g, x.buf, y.buf, has_am ? am.buf : NULL);
    Py_END_ALLOW_THREADS
    if (has_am) PyBuffer_Release(&am);
    PyBuffer_Release(&y);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
fail_y:
    PyBuffer_Release(&y);
fail_x:
    PyBuffer_Release(&x);
    return NULL;
}

static PyObject *py_maxpool_backward(PyObject *self, PyObject *args) {
    PyObject *ody, *oam, *odx;
    PoolGeom g;
    if (!PyArg_ParseTuple(args, "OOO(iiii)(ii)(ii)(ii)(ii):maxpool_backward", &ody, &oam, &odx, &g.a, &g.h, &g.w,
                          &g.b, &g.fh, &g.fw, &g.sh, &g.sw, &g.pt, &g.pl, &g.ho, &g.wo))
        return NULL;
    if (pool_geometry(&g) < 0) return NULL;
    Py_ssize_t n_in = product(4, g.a, g.h, g.w, g.b), n_out = product(4, g.a, g.ho, g.wo, g.b);
    Py_buffer dy, am, dx;
    char kind = 0;
    if (get_buffer(ody, &dy, "dy", 0, n_out, &kind) < 0) return NULL;
    if (get_index_buffer(oam, &am, 0, n_out) < 0) goto fail_dy;
    if (get_buffer(odx, &dx, "dx", 1, n_in, &kind) < 0) goto fail_am;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        maxpool_backward_f32(&g, dy.buf, am.buf, dx.buf);
    else
        maxpool_backward_f64(&g, dy.buf, am.buf, dx.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dx);
    PyBuffer_Release(&am);
    PyBuffer_Release(&dy);
    Py_RETURN_NONE;
fail_am:
    PyBuffer_Release(&am);
fail_dy:
    PyBuffer_Release(&dy);
    return NULL;
}

static PyObject *py_backward_prep(PyObject *self, PyObject *args) {
    PyObject *ody, *oy, *odym, *oz, *odb;
    int k, ho, wo, n, hz, wz, top, left, hy = 0, wy = 0, yt = -1, yl = -1;
    if (!PyArg_ParseTuple(args, "OOOOO(iiii)(iiii)|(iiii):backward_prep", &ody, &oy, &odym, &oz, &odb, &k, &ho, &wo,
                          &n, &hz, &wz, &top, &left, &hy, &wy, &yt, &yl))
        return NULL;
    Py_ssize_t count = product(4, k, ho, wo, n);
    if (count < 0) return NULL;
    if (oz != Py_None && product(4, k, hz, wz, n) < 0) return NULL;
    if ((long long)top < -(long long)ho || top > hz || (long long)left < -(long long)wo || left > wz) {
        PyErr_SetString(PyExc_ValueError, "_native: z's (top, left) must be within (-H', Hz) and (-W', Wz)");
        return NULL;
    }
    Place yp; /* y dense like dy, or in a (K, Hy, Wy, N) frame */
    if (place_in_frame(&yp, "y", k, ho, wo, n, hy, wy, yt, yl) < 0) return NULL;
    if (yt == -1 && yl == -1) hy = ho, wy = wo, yt = yl = 0;
    Py_ssize_t y_count = yp.count;
    PyObject *objs[5] = {ody, oy, odym, oz, odb};
    const char *names[5] = {"dy", "y", "dym", "z", "db"};
    Py_ssize_t need[5] = {count, y_count, count, oz != Py_None ? product(4, k, hz, wz, n) : 0, k};
    Py_buffer views[5];
    int have[5] = {0};
    char kind = 0;
    for (int i = 0; i < 5; i++) {
        if (objs[i] == Py_None) {
            if (i == 0) {
                PyErr_SetString(PyExc_ValueError, "_native: dy is required");
                goto fail;
            }
            continue;
        }
        if (get_buffer(objs[i], &views[i], names[i], i >= 2, need[i], &kind) < 0) goto fail;
        have[i] = 1;
    }
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        backward_prep_f32(views[0].buf, have[1] ? views[1].buf : NULL, have[2] ? views[2].buf : NULL,
                          have[3] ? views[3].buf : NULL, have[4] ? views[4].buf : NULL, k, ho, wo, n, hz, wz, top, left,
                          hy, wy, yt, yl);
    else
        backward_prep_f64(views[0].buf, have[1] ? views[1].buf : NULL, have[2] ? views[2].buf : NULL,
                          have[3] ? views[3].buf : NULL, have[4] ? views[4].buf : NULL, k, ho, wo, n, hz, wz, top, left,
                          hy, wy, yt, yl);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 5; i++)
        if (have[i]) PyBuffer_Release(&views[i]);
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < 5; i++)
        if (have[i]) PyBuffer_Release(&views[i]);
    return NULL;
}

/* The arrays of one parameter's update: all float32 or all float64, C-contiguous, the same size,
 * writable except dw. Returns the element count, or -1 with ValueError. */
static Py_ssize_t get_param_buffers(PyObject **objs, Py_buffer *views, int count, char *kind) {
    static const char *names[] = {"w", "state", "state", "dw"};
    for (int i = 0; i < count; i++) {
        int is_grad = i == count - 1;
        Py_ssize_t need = i == 0 ? 0 : views[0].len / views[0].itemsize;
        if (get_buffer(objs[i], &views[i], is_grad ? names[3] : names[i < 3 ? i : 2], !is_grad, need, kind) < 0) {
            for (int j = 0; j < i; j++) PyBuffer_Release(&views[j]);
            return -1;
        }
        if (views[i].len != views[0].len) {
            PyErr_SetString(PyExc_ValueError, "_native: a parameter, its gradient and its state must have one size");
            for (int j = 0; j <= i; j++) PyBuffer_Release(&views[j]);
            return -1;
        }
    }
    return views[0].len / views[0].itemsize;
}

static PyObject *py_sgd_momentum(PyObject *self, PyObject *args) {
    PyObject *objs[3];
    double lr, momentum, dampening, weight_decay;
    int nesterov, first = 0;
    if (!PyArg_ParseTuple(args, "OOOddddp|p:sgd_momentum", &objs[0], &objs[1], &objs[2], &lr, &momentum, &dampening,
                          &weight_decay, &nesterov, &first))
        return NULL;
    Py_buffer v[3];
    char kind = 0;
    Py_ssize_t count = get_param_buffers(objs, v, 3, &kind);
    if (count < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        sgd_momentum_f32(v[0].buf, v[1].buf, v[2].buf, count, (float)lr, (float)momentum, (float)dampening,
                         (float)weight_decay, nesterov, first);
    else
        sgd_momentum_f64(v[0].buf, v[1].buf, v[2].buf, count, lr, momentum, dampening, weight_decay, nesterov, first);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 3; i++) PyBuffer_Release(&v[i]);
    Py_RETURN_NONE;
}

static PyObject *py_adam(PyObject *self, PyObject *args) {
    PyObject *objs[4];
    double lr, beta1, beta2, eps, weight_decay, bias1, bias2_sqrt;
    int decoupled;
    if (!PyArg_ParseTuple(args, "OOOOdddddpdd:adam", &objs[0], &objs[1], &objs[2], &objs[3], &lr, &beta1, &beta2, &eps,
                          &weight_decay, &decoupled, &bias1, &bias2_sqrt))
        return NULL;
    Py_buffer v[4];
    char kind = 0;
    Py_ssize_t count = get_param_buffers(objs, v, 4, &kind);
    if (count < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        adam_f32(v[0].buf, v[1].buf, v[2].buf, v[3].buf, count, (float)lr, (float)beta1, (float)beta2, (float)eps,
                 (float)weight_decay, decoupled, (float)bias1, (float)bias2_sqrt);
    else
        adam_f64(v[0].buf, v[1].buf, v[2].buf, v[3].buf, count, lr, beta1, beta2, eps, weight_decay, decoupled, bias1,
                 bias2_sqrt);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 4; i++) PyBuffer_Release(&v[i]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"conv_forward", py_conv_forward, METH_VARARGS,
     "conv_forward(x, w, b, y, (C, Hp, Wp, N), (FH, FW, K), (H', W'), (DH, DW), relu[, (Hq, Wq, top, left)]): "
     "y = x ⋆ w + b (stride 1) in batch-minor memory, written into y (K, H', W', N), or into the interior "
     "at (top, left) of a (K, Hq, Wq, N) frame y."},
    {"conv_weight_grad", py_conv_weight_grad, METH_VARARGS,
     "conv_weight_grad(x, dy, dw, (C, Hp, Wp, N), (FH, FW, K), (H', W'), (DH, DW), rows_per_block"
     "[, (Hd, Wd, top, left)]): dw = Σ windows of x · dy (stride 1), written into dw; dy dense (K, H', W', N), "
     "or the interior of a (K, Hd, Wd, N) frame."},
    {"conv_forward_pool2", py_conv_forward_pool2, METH_VARARGS,
     "conv_forward_pool2(x, w, b, y, (C, Hp, Wp, N), (FH, FW, K), (H', W'), (DH, DW), relu[, (Hq, Wq, top, left)]): "
     "conv_forward followed by 2 × 2, stride-2 max pooling (H', W' even): y (K, H'/2, W'/2, N) or its frame."},
    {"backward_prep", py_backward_prep, METH_VARARGS,
     "backward_prep(dy, y or None, dym or None, z or None, db or None, (K, H', W', N), (Hz, Wz, top, left)"
     "[, (Hy, Wy, top, left)]): in one pass, dym = dy·[y > 0], db = Σ dym per filter, z = dym placed at "
     "(top, left) in zeros; y dense like dy, or the interior of a (K, Hy, Wy, N) frame."},
    {"sgd_momentum", py_sgd_momentum, METH_VARARGS,
     "sgd_momentum(w, buf, dw, lr, momentum, dampening, weight_decay, nesterov[, first]): one SGD-with-momentum "
     "step in one pass, w and buf in place (first: buf = g, its old contents unread)."},
    {"adam", py_adam, METH_VARARGS,
     "adam(w, m, v, dw, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2_sqrt): one Adam/AdamW step "
     "(no amsgrad) in one pass, w, m and v in place."},
    {"maxpool_forward", py_maxpool_forward, METH_VARARGS,
     "maxpool_forward(x, y, argmax or None, (A, H, W, B), (FH, FW), (SH, SW), (top, left), (H', W')"
     "[, (Hq, Wq, top, left)]): max pooling of (A, H, W, B) arrays (B innermost) with -inf padding, written "
     "into y (or the interior of an (A, Hq, Wq, B) frame y) and argmax (uint8)."},
    {"maxpool_backward", py_maxpool_backward, METH_VARARGS,
     "maxpool_backward(dy, argmax, dx, (A, H, W, B), (FH, FW), (SH, SW), (top, left), (H', W')): dx, "
     "each dy routed to its window's argmax."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "cnnkit's compiled kernels: direct stride-1 convolution in batch-minor memory, max pooling, and "
                                    "one-pass SGD/Adam steps.", -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "VECTOR_BYTES", VBYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
