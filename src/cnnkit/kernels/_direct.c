/* cnnkit.kernels._direct: direct stride-1 convolution in batch-minor memory (compiled helper).
 *
 * Layout: x (C, Hp, Wp, N) already padded, w (FH, FW, C, K) (HWIO), y (K, H', W', N), all
 * C-contiguous, float32 or float64. With the batch innermost, output row r of filter k is one
 * contiguous span of W'·N values, and tap (i, j) of channel c contributes to it the contiguous
 * span of input row r + i·DH starting at column j·DW (offset j·DW·N):
 *
 *     y[k, r, :] = b[k] + Σ_{i, j, c} w[i, j, c, k] · x[c, r + i·DH, j·DW·N : j·DW·N + W'·N]
 *
 * so the convolution is a sum of shifted, scaled copies (no im2col matrix is ever made). The
 * forward micro-kernel keeps a block of 8 filters × 2 SIMD vectors of the span in registers and
 * runs the whole FH·FW·C reduction over it (per step: 2 vector loads, 8 broadcasts, 16 FMAs).
 * The weight gradient is the matching dot product
 *
 *     dw[i, j, c, k] = Σ_r x[c, r + i·DH, j·DW·N : …] · dy[k, r, :]
 *
 * kept as a 4 × 4 block of (channel, filter) vector accumulators over blocks of rows small enough
 * to stay in cache. The input gradient at stride 1 is a forward convolution of the zero-padded dy
 * with the flipped kernel (cnnkit.kernels.conv does that with conv_forward).
 *
 * The Python wrappers check every buffer's type, contiguity and size against the geometry before
 * touching memory, and release the GIL while they compute, so batch shards run in parallel threads.
 * Vectors are GCC vector extensions: the compiler emits AVX-512, AVX2 or SSE for the machine the
 * package is built on (setup.py compiles with -march=native).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
    size_t chan_x, row_x, chan_y;
} ConvGeom;

#define T float
#define V vf
#define VI vfi
#define VL ((int)(VBYTES / sizeof(float)))
#define SFX _f32
#include "_direct_body.h"
#undef T
#undef V
#undef VI
#undef VL
#undef SFX

#define T double
#define V vd
#define VI vdi
#define VL ((int)(VBYTES / sizeof(double)))
#define SFX _f64
#include "_direct_body.h"
#undef T
#undef V
#undef VI
#undef VL
#undef SFX

/* ------------------------------------------------------------------------------ Python glue */

/* Get a C-contiguous buffer of `obj` holding at least `need` items ('f' or 'd'); NULL obj allowed
 * when `optional`. Returns 0 on success, -1 with an exception set. */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *name, int writable, Py_ssize_t need,
                      char *kind) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_ValueError, "_direct: %s must be a C-contiguous%s float32/float64 array", name,
                     writable ? ", writable" : "");
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    char k = (f[0] == 'f' && f[1] == 0 && view->itemsize == 4) ? 'f'
           : (f[0] == 'd' && f[1] == 0 && view->itemsize == 8) ? 'd' : 0;
    if (!k || (*kind && k != *kind)) {
        PyErr_Format(PyExc_ValueError, "_direct: %s must be float32 or float64, like the other arrays "
                     "(received format '%s')", name, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    *kind = k;
    if (view->len / view->itemsize < need) {
        PyErr_Format(PyExc_ValueError, "_direct: %s holds %zd values; the geometry needs %zd", name,
                     view->len / view->itemsize, need);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int check_geometry(ConvGeom *g) {
    if (g->c < 1 || g->hp < 1 || g->wp < 1 || g->n < 1 || g->fh < 1 || g->fw < 1 || g->k < 1 || g->ho < 1 ||
        g->wo < 1 || g->dh < 1 || g->dw < 1 || g->ho + (g->fh - 1) * g->dh > g->hp ||
        g->wo + (g->fw - 1) * g->dw > g->wp) {
        PyErr_SetString(PyExc_ValueError, "_direct: inconsistent convolution geometry");
        return -1;
    }
    g->row_x = (size_t)g->wp * g->n;
    g->chan_x = (size_t)g->hp * g->row_x;
    g->chan_y = (size_t)g->ho * g->wo * g->n;
    return 0;
}

static PyObject *py_conv_forward(PyObject *self, PyObject *args) {
    PyObject *ox, *ow, *ob, *oy;
    ConvGeom g = {0};
    if (!PyArg_ParseTuple(args, "OOOO(iiii)(iii)(ii)(ii)p:conv_forward", &ox, &ow, &ob, &oy, &g.c, &g.hp,
                          &g.wp, &g.n, &g.fh, &g.fw, &g.k, &g.ho, &g.wo, &g.dh, &g.dw, &g.relu))
        return NULL;
    if (check_geometry(&g) < 0) return NULL;
    Py_buffer x, w, b, y;
    char kind = 0;
    int has_b = ob != Py_None;
    if (get_buffer(ox, &x, "x", 0, (Py_ssize_t)(g.c * g.chan_x), &kind) < 0) return NULL;
    if (get_buffer(ow, &w, "w", 0, (Py_ssize_t)g.fh * g.fw * g.c * g.k, &kind) < 0) goto fail_x;
    if (has_b && get_buffer(ob, &b, "b", 0, g.k, &kind) < 0) goto fail_w;
    if (get_buffer(oy, &y, "y", 1, (Py_ssize_t)(g.k * g.chan_y), &kind) < 0) goto fail_b;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        conv_forward_f32(&g, x.buf, w.buf, has_b ? b.buf : NULL, y.buf);
    else
        conv_forward_f64(&g, x.buf, w.buf, has_b ? b.buf : NULL, y.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&y);
    if (has_b) PyBuffer_Release(&b);
    PyBuffer_Release(&w);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
fail_b:
    if (has_b) PyBuffer_Release(&b);
fail_w:
    PyBuffer_Release(&w);
fail_x:
    PyBuffer_Release(&x);
    return NULL;
}

static PyObject *py_conv_weight_grad(PyObject *self, PyObject *args) {
    PyObject *ox, *ody, *odw;
    int rows_per_block;
    ConvGeom g = {0};
    if (!PyArg_ParseTuple(args, "OOO(iiii)(iii)(ii)(ii)i:conv_weight_grad", &ox, &ody, &odw, &g.c, &g.hp, &g.wp,
                          &g.n, &g.fh, &g.fw, &g.k, &g.ho, &g.wo, &g.dh, &g.dw, &rows_per_block))
        return NULL;
    if (check_geometry(&g) < 0) return NULL;
    if (rows_per_block < 1) rows_per_block = 1;
    Py_buffer x, dy, dw;
    char kind = 0;
    if (get_buffer(ox, &x, "x", 0, (Py_ssize_t)(g.c * g.chan_x), &kind) < 0) return NULL;
    if (get_buffer(ody, &dy, "dy", 0, (Py_ssize_t)(g.k * g.chan_y), &kind) < 0) goto fail_x;
    if (get_buffer(odw, &dw, "dw", 1, (Py_ssize_t)g.fh * g.fw * g.c * g.k, &kind) < 0) goto fail_dy;
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

static PyMethodDef methods[] = {
    {"conv_forward", py_conv_forward, METH_VARARGS,
     "conv_forward(x, w, b, y, (C, Hp, Wp, N), (FH, FW, K), (H', W'), (DH, DW), relu): y = x ⋆ w + b "
     "(stride 1) in batch-minor memory, written into y."},
    {"conv_weight_grad", py_conv_weight_grad, METH_VARARGS,
     "conv_weight_grad(x, dy, dw, (C, Hp, Wp, N), (FH, FW, K), (H', W'), (DH, DW), rows_per_block): "
     "dw = Σ windows of x · dy (stride 1), written into dw."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_direct",
                                    "Direct stride-1 convolution kernels in batch-minor memory.", -1, methods};

PyMODINIT_FUNC PyInit__direct(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "VECTOR_BYTES", VBYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
