/* Optimiser steps for one element type, one pass over each parameter (included twice by
 * _native.c, like _conv_body.h). The same arithmetic, term by term, as cnnkit.optim's NumPy
 * versions (torch.optim's formulas); only the rounding of fused multiply-adds may differ. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

/* SGD with momentum: g = dw + λ·w;  buf = g on the first step (`first`: buf is not read), else
 * buf = μ·buf + (1 - τ)·g;  w -= lr·(g + μ·buf) (Nesterov) or lr·buf. */
static void FN(sgd_momentum)(T *w, T *buf, const T *dw, size_t count, T lr, T momentum, T dampening,
                             T weight_decay, int nesterov, int first) {
    const T keep = 1 - dampening;
    for (size_t i = 0; i < count; i++) {
        const T g = weight_decay != 0 ? dw[i] + weight_decay * w[i] : dw[i];
        const T b = first ? g : momentum * buf[i] + (dampening != 0 ? keep * g : g);
        buf[i] = b;
        w[i] -= lr * (nesterov ? g + momentum * b : b);
    }
}

/* Adam / AdamW (no amsgrad): g = dw + λ·w (Adam) or w *= 1 - lr·λ first (AdamW, decoupled);
 * m = β1·m + (1 - β1)·g;  v = β2·v + (1 - β2)·g²;  w -= (lr/bias1)·m/(sqrt(v)/bias2_sqrt + ε). */
static void FN(adam)(T *w, T *m, T *v, const T *dw, size_t count, T lr, T beta1, T beta2, T eps, T weight_decay,
                     int decoupled, T bias1, T bias2_sqrt) {
    const T decay = 1 - lr * weight_decay, step = lr / bias1;
    for (size_t i = 0; i < count; i++) {
        T g = dw[i];
        if (decoupled) {
            if (weight_decay != 0) w[i] *= decay;
        } else if (weight_decay != 0) {
            g += weight_decay * w[i];
        }
        const T mi = beta1 * m[i] + (1 - beta1) * g;
        const T vi = beta2 * v[i] + g * g * (1 - beta2);
        m[i] = mi;
        v[i] = vi;
        w[i] -= mi / (SQRT(vi) / bias2_sqrt + eps) * step;
    }
}

#undef FN
#undef CAT
#undef CAT_
