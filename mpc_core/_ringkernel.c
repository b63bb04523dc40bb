/*
 * Ring kernels for Z_2^64 and Z_2^128 on whole arrays (mpc_core._ringkernel).
 *
 * numpy has no 128-bit integers, and emulating them with 64-bit limbs costs
 * many passes over memory per operation. These loops use the compiler's
 * unsigned __int128 (GCC and Clang on 64-bit targets), whose arithmetic
 * wraps modulo 2^128 exactly as the ring requires, and run with the GIL
 * released so that worker threads compute in parallel.
 *
 * Every function takes contiguous buffers (numpy arrays, bytes, memoryviews)
 * holding native little-endian words: 8 bytes per element for the "u64"
 * variants, 16 bytes (low word first) for "u128". Element counts come from
 * the output buffer; inputs must match it. Elementwise functions allow the
 * output to be one of the inputs (in-place); matrix functions do not.
 *
 * This is arithmetic, not cryptography: no secrets are branched on, and the
 * module does no I/O. Built with the limited API (abi3) of CPython 3.11.
 */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t u64;
typedef unsigned __int128 u128;
typedef __int128 i128;

static int check_size(Py_buffer *view, Py_ssize_t expected_bytes, const char *what) {
    if (view->len != expected_bytes) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd", what, view->len, expected_bytes);
        return -1;
    }
    return 0;
}

static int check_elements(Py_buffer *view, Py_ssize_t width, const char *what) {
    if (view->len % width) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, not a whole number of %zd-byte elements", what,
                     view->len, width);
        return -1;
    }
    return 0;
}

static int overlaps(Py_buffer *a, Py_buffer *b) {
    const char *a0 = (const char *)a->buf, *b0 = (const char *)b->buf;
    return a->len && b->len && a0 < b0 + b->len && b0 < a0 + a->len;
}

static int check_dims(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n) {
    if (m < 0 || k < 0 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "matrix dimensions must be non-negative");
        return -1;
    }
    if ((k && m > PY_SSIZE_T_MAX / k) || (n && k > PY_SSIZE_T_MAX / n) || (n && m > PY_SSIZE_T_MAX / n)) {
        PyErr_SetString(PyExc_OverflowError, "matrix dimensions overflow");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- elementwise */

#define BINARY(NAME, T, EXPR)                                                                       \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                           \
        Py_buffer out, a, b;                                                                          \
        if (!PyArg_ParseTuple(args, "w*y*y*", &out, &a, &b)) return NULL;                             \
        PyObject *result = NULL;                                                                      \
        if (check_elements(&out, sizeof(T), "out") || check_size(&a, out.len, "a") ||                 \
            check_size(&b, out.len, "b"))                                                             \
            goto done;                                                                                \
        {                                                                                             \
            Py_ssize_t count = out.len / (Py_ssize_t)sizeof(T);                                       \
            T *o = (T *)out.buf;                                                                      \
            const T *x = (const T *)a.buf, *y = (const T *)b.buf;                                     \
            Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count; i++) {                            \
                T xi = x[i], yi = y[i];                                                               \
                o[i] = (EXPR);                                                                        \
            }                                                                                         \
            Py_END_ALLOW_THREADS                                                                      \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&a);                                                                         \
        PyBuffer_Release(&b);                                                                         \
        return result;                                                                                \
    }

/* out = a OP c for one public constant c given as the bytes of one element */
#define SCALAR(NAME, T, EXPR)                                                                       \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                           \
        Py_buffer out, a, c;                                                                          \
        if (!PyArg_ParseTuple(args, "w*y*y*", &out, &a, &c)) return NULL;                             \
        PyObject *result = NULL;                                                                      \
        if (check_elements(&out, sizeof(T), "out") || check_size(&a, out.len, "a") ||                 \
            check_size(&c, sizeof(T), "constant"))                                                    \
            goto done;                                                                                \
        {                                                                                             \
            Py_ssize_t count = out.len / (Py_ssize_t)sizeof(T);                                       \
            T *o = (T *)out.buf;                                                                      \
            const T *x = (const T *)a.buf;                                                            \
            T yi;                                                                                     \
            memcpy(&yi, c.buf, sizeof(T));                                                            \
            Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count; i++) {                            \
                T xi = x[i];                                                                          \
                o[i] = (EXPR);                                                                        \
            }                                                                                         \
            Py_END_ALLOW_THREADS                                                                      \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&a);                                                                         \
        PyBuffer_Release(&c);                                                                         \
        return result;                                                                                \
    }

/* out = f(a, shift) for a shift count 0 <= shift < bits */
#define SHIFT(NAME, T, EXPR)                                                                        \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                           \
        Py_buffer out, a;                                                                             \
        int shift;                                                                                    \
        if (!PyArg_ParseTuple(args, "w*y*i", &out, &a, &shift)) return NULL;                          \
        PyObject *result = NULL;                                                                      \
        if (check_elements(&out, sizeof(T), "out") || check_size(&a, out.len, "a")) goto done;        \
        if (shift < 0 || shift >= (int)(8 * sizeof(T))) {                                             \
            PyErr_Format(PyExc_ValueError, "shift must be within 0..%d", (int)(8 * sizeof(T)) - 1);    \
            goto done;                                                                                \
        }                                                                                             \
        {                                                                                             \
            Py_ssize_t count = out.len / (Py_ssize_t)sizeof(T);                                       \
            T *o = (T *)out.buf;                                                                      \
            const T *x = (const T *)a.buf;                                                            \
            Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count; i++) {                            \
                T xi = x[i];                                                                          \
                o[i] = (EXPR);                                                                        \
            }                                                                                         \
            Py_END_ALLOW_THREADS                                                                      \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&a);                                                                         \
        return result;                                                                                \
    }

/* ---------------------------------------------------------------- replicated product terms */

/* out = x0 * (y0 + y1) + x1 * y0: party i's 3-out-of-3 term of x * y, elementwise. */
#define MUL_TERMS(NAME, T)                                                                          \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                           \
        Py_buffer out, x0, x1, y0, y1;                                                                \
        if (!PyArg_ParseTuple(args, "w*y*y*y*y*", &out, &x0, &x1, &y0, &y1)) return NULL;             \
        PyObject *result = NULL;                                                                      \
        if (check_elements(&out, sizeof(T), "out") || check_size(&x0, out.len, "x0") ||               \
            check_size(&x1, out.len, "x1") || check_size(&y0, out.len, "y0") ||                       \
            check_size(&y1, out.len, "y1"))                                                           \
            goto done;                                                                                \
        {                                                                                             \
            Py_ssize_t count = out.len / (Py_ssize_t)sizeof(T);                                       \
            T *o = (T *)out.buf;                                                                      \
            const T *a0 = x0.buf, *a1 = x1.buf, *b0 = y0.buf, *b1 = y1.buf;                           \
            Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count; i++) {                            \
                T b = b0[i];                                                                          \
                o[i] = a0[i] * (b + b1[i]) + a1[i] * b;                                               \
            }                                                                                         \
            Py_END_ALLOW_THREADS                                                                      \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&x0);                                                                        \
        PyBuffer_Release(&x1);                                                                        \
        PyBuffer_Release(&y0);                                                                        \
        PyBuffer_Release(&y1);                                                                        \
        return result;                                                                                \
    }

/* out (m x n) = A0 (B0 + B1) + A1 B0 with A* (m x k), B* (k x n), row-major.
 * With A1 = NULL and B1 = NULL (the plain product): out = A0 B0. */
#define MATMUL_KERNEL(NAME, T)                                                                      \
    static int NAME(T *out, const T *a0, const T *a1, const T *b0, const T *b1, Py_ssize_t m,        \
                    Py_ssize_t k, Py_ssize_t n) {                                                    \
        T *bs = NULL;                                                                                 \
        if (b1 != NULL) {                                                                             \
            bs = (T *)malloc((size_t)(k * n > 0 ? k * n : 1) * sizeof(T));                       \
            if (bs == NULL) return -1;                                                                \
            for (Py_ssize_t i = 0; i < k * n; i++) bs[i] = b0[i] + b1[i];                             \
        }                                                                                             \
        const T *first = bs != NULL ? bs : b0;                                                        \
        if (n == 1) {                                                                                 \
            for (Py_ssize_t i = 0; i < m; i++) {                                                      \
                const T *r0 = a0 + i * k, *r1 = a1 != NULL ? a1 + i * k : NULL;                       \
                T acc = 0;                                                                            \
                if (r1 != NULL)                                                                       \
                    for (Py_ssize_t p = 0; p < k; p++) acc += r0[p] * first[p] + r1[p] * b0[p];       \
                else                                                                                  \
                    for (Py_ssize_t p = 0; p < k; p++) acc += r0[p] * first[p];                       \
                out[i] = acc;                                                                         \
            }                                                                                         \
        } else {                                                                                      \
            memset(out, 0, (size_t)(m * n) * sizeof(T));                                              \
            for (Py_ssize_t i = 0; i < m; i++) {                                                      \
                T *row = out + i * n;                                                                 \
                for (Py_ssize_t p = 0; p < k; p++) {                                                  \
                    T x = a0[i * k + p];                                                              \
                    const T *fp = first + p * n;                                                      \
                    for (Py_ssize_t j = 0; j < n; j++) row[j] += x * fp[j];                           \
                    if (a1 != NULL) {                                                                 \
                        T z = a1[i * k + p];                                                          \
                        const T *sp = b0 + p * n;                                                     \
                        for (Py_ssize_t j = 0; j < n; j++) row[j] += z * sp[j];                       \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        free(bs);                                                                            \
        return 0;                                                                                     \
    }

/* out (d x e) = X0^T (Y0 + Y1) + X1^T Y0 with X* (rows x d), Y* (rows x e), row-major:
 * the cross products of column blocks (Gram matrices) without transposing. */
#define CROSS_KERNEL(NAME, T)                                                                       \
    static int NAME(T *out, const T *x0, const T *x1, const T *y0, const T *y1, Py_ssize_t rows,     \
                    Py_ssize_t d, Py_ssize_t e) {                                                    \
        T *ys = (T *)malloc((size_t)(e > 0 ? e : 1) * sizeof(T));                                \
        if (ys == NULL) return -1;                                                                    \
        memset(out, 0, (size_t)(d * e) * sizeof(T));                                                  \
        for (Py_ssize_t r = 0; r < rows; r++) {                                                       \
            const T *yr0 = y0 + r * e;                                                                \
            const T *first = yr0;                                                                     \
            if (y1 != NULL) {                                                                         \
                const T *yr1 = y1 + r * e;                                                            \
                for (Py_ssize_t j = 0; j < e; j++) ys[j] = yr0[j] + yr1[j];                           \
                first = ys;                                                                           \
            }                                                                                         \
            for (Py_ssize_t a = 0; a < d; a++) {                                                      \
                T u = x0[r * d + a];                                                                  \
                T *row = out + a * e;                                                                 \
                if (x1 != NULL) {                                                                     \
                    T v = x1[r * d + a];                                                              \
                    for (Py_ssize_t j = 0; j < e; j++) row[j] += u * first[j] + v * yr0[j];           \
                } else {                                                                              \
                    for (Py_ssize_t j = 0; j < e; j++) row[j] += u * first[j];                        \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        free(ys);                                                                            \
        return 0;                                                                                     \
    }

/* Python entry points for the matrix kernels: (out, a0, a1, b0, b1, m, k, n); a1 and b1 may be
 * None for the plain product. For CROSS, (m, k, n) = (rows, d, e). */
#define MATRIX_ENTRY(NAME, T, KERNEL, OUT_ELEMS, A_ELEMS, B_ELEMS)                                  \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                           \
        Py_buffer out, a0, b0;                                                                        \
        PyObject *a1_obj, *b1_obj;                                                                    \
        Py_ssize_t m, k, n;                                                                           \
        Py_buffer a1 = {0}, b1 = {0};                                                                 \
        int have_a1 = 0, have_b1 = 0;                                                                 \
        if (!PyArg_ParseTuple(args, "w*y*Oy*Onnn", &out, &a0, &a1_obj, &b0, &b1_obj, &m, &k, &n))     \
            return NULL;                                                                              \
        PyObject *result = NULL;                                                                      \
        if (check_dims(m, k, n)) goto done;                                                           \
        if (a1_obj != Py_None) {                                                                      \
            if (PyObject_GetBuffer(a1_obj, &a1, PyBUF_SIMPLE)) goto done;                              \
            have_a1 = 1;                                                                              \
        }                                                                                             \
        if (b1_obj != Py_None) {                                                                      \
            if (PyObject_GetBuffer(b1_obj, &b1, PyBUF_SIMPLE)) goto done;                              \
            have_b1 = 1;                                                                              \
        }                                                                                             \
        if (have_a1 != have_b1) {                                                                     \
            PyErr_SetString(PyExc_ValueError, "give both second components or neither");              \
            goto done;                                                                                \
        }                                                                                             \
        Py_ssize_t w = (Py_ssize_t)sizeof(T);                                                         \
        if (check_size(&out, (OUT_ELEMS)*w, "out") || check_size(&a0, (A_ELEMS)*w, "a0") ||           \
            check_size(&b0, (B_ELEMS)*w, "b0") || (have_a1 && check_size(&a1, (A_ELEMS)*w, "a1")) ||   \
            (have_b1 && check_size(&b1, (B_ELEMS)*w, "b1")))                                          \
            goto done;                                                                                \
        if (overlaps(&out, &a0) || overlaps(&out, &b0) || (have_a1 && overlaps(&out, &a1)) ||          \
            (have_b1 && overlaps(&out, &b1))) {                                                       \
            PyErr_SetString(PyExc_ValueError, "the output must not overlap an input");                \
            goto done;                                                                                \
        }                                                                                             \
        {                                                                                             \
            int failed;                                                                               \
            Py_BEGIN_ALLOW_THREADS failed =                                                           \
                KERNEL((T *)out.buf, (const T *)a0.buf, have_a1 ? (const T *)a1.buf : NULL,           \
                       (const T *)b0.buf, have_b1 ? (const T *)b1.buf : NULL, m, k, n);               \
            Py_END_ALLOW_THREADS if (failed) {                                                        \
                PyErr_NoMemory();                                                                     \
                goto done;                                                                            \
            }                                                                                         \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&a0);                                                                        \
        PyBuffer_Release(&b0);                                                                        \
        if (have_a1) PyBuffer_Release(&a1);                                                           \
        if (have_b1) PyBuffer_Release(&b1);                                                           \
        return result;                                                                                \
    }

/* The signed value of an element as the nearest double (ties to even). libgcc's own
 * (double)(__int128) is exact too but about 10x slower; this rounds the top 64 significant
 * bits to odd (the sticky bit of the rest), after which the hardware's 64-bit conversion
 * rounds correctly, and scales by an exact power of two. A value that fits in 64 signed bits
 * (every decoded fixed-point output below 2^31 at f = 32) takes the hardware conversion
 * directly; the branch depends on the value being revealed, never on a share. */
static inline double i64_to_double(u64 x) { return (double)(int64_t)x; }

static inline double i128_to_double(u128 x) {
    if ((i128)x == (i128)(int64_t)(u64)x) return (double)(int64_t)(u64)x;
    u128 sign = (u128)((i128)x >> 127); /* all ones when negative */
    u128 magnitude = (x ^ sign) - sign;
    u64 high = (u64)(magnitude >> 64), low = (u64)magnitude;
    int shift = high ? __builtin_clzll(high) : 64 + __builtin_clzll(low | 1);
    u128 normal = magnitude << shift; /* most significant bit at 127 (or zero) */
    u64 top = (u64)(normal >> 64) | ((u64)normal != 0);
    int64_t odd = (int64_t)((top >> 1) | (top & 1)); /* 63 bits, rounded to odd */
    union { u64 bits; double value; } scale = {.bits = (u64)(1023 + 65 - shift) << 52};
    double rounded = (double)odd * scale.value; /* times 2^(65 - shift): exact */
    return (u64)sign ? -rounded : rounded;
}

/* out[i] = the signed value of a[i] as a double, correctly rounded. */
#define TO_DOUBLE(NAME, T, CONVERT)                                                                 \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                           \
        Py_buffer out, a;                                                                             \
        if (!PyArg_ParseTuple(args, "w*y*", &out, &a)) return NULL;                                   \
        PyObject *result = NULL;                                                                      \
        if (check_elements(&a, sizeof(T), "a") ||                                                     \
            check_size(&out, a.len / (Py_ssize_t)sizeof(T) * (Py_ssize_t)sizeof(double), "out"))      \
            goto done;                                                                                \
        {                                                                                             \
            Py_ssize_t count = a.len / (Py_ssize_t)sizeof(T);                                         \
            double *o = (double *)out.buf;                                                            \
            const T *x = (const T *)a.buf;                                                            \
            Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count; i++) o[i] = CONVERT(x[i]);     \
            Py_END_ALLOW_THREADS                                                                      \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&a);                                                                         \
        return result;                                                                                \
    }

/* out[i] = signed(a[i] + b[i] + c[i]) as a double: the reconstruction of an output, decoded. */
#define SUM3_TO_DOUBLE(NAME, T, CONVERT)                                                            \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                           \
        Py_buffer out, a, b, c;                                                                       \
        if (!PyArg_ParseTuple(args, "w*y*y*y*", &out, &a, &b, &c)) return NULL;                       \
        PyObject *result = NULL;                                                                      \
        if (check_elements(&a, sizeof(T), "a") || check_size(&b, a.len, "b") ||                       \
            check_size(&c, a.len, "c") ||                                                             \
            check_size(&out, a.len / (Py_ssize_t)sizeof(T) * (Py_ssize_t)sizeof(double), "out"))      \
            goto done;                                                                                \
        {                                                                                             \
            Py_ssize_t count = a.len / (Py_ssize_t)sizeof(T);                                         \
            double *o = (double *)out.buf;                                                            \
            const T *x = a.buf, *y = b.buf, *z = c.buf;                                               \
            Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count; i++) o[i] = CONVERT(x[i] + y[i] + z[i]); \
            Py_END_ALLOW_THREADS                                                                      \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&a);                                                                         \
        PyBuffer_Release(&b);                                                                         \
        PyBuffer_Release(&c);                                                                         \
        return result;                                                                                \
    }

#define RING_FUNCTIONS(SUFFIX, T, SIGNED)                                                           \
    BINARY(add_##SUFFIX, T, xi + yi)                                                                  \
    BINARY(sub_##SUFFIX, T, xi - yi)                                                                  \
    BINARY(mul_##SUFFIX, T, xi * yi)                                                                  \
    SCALAR(add_scalar_##SUFFIX, T, xi + yi)                                                           \
    SCALAR(mul_scalar_##SUFFIX, T, xi * yi)                                                           \
    SHIFT(ashr_##SUFFIX, T, (T)(((SIGNED)xi) >> shift))                                               \
    SHIFT(lshr_##SUFFIX, T, xi >> shift)                                                              \
    SHIFT(shl_##SUFFIX, T, xi << shift)                                                               \
    MUL_TERMS(mul_terms_##SUFFIX, T)                                                                  \
    TO_DOUBLE(to_double_##SUFFIX, T, SUFFIX##_to_double)                                              \
    SUM3_TO_DOUBLE(sum3_to_double_##SUFFIX, T, SUFFIX##_to_double)                                    \
    MATMUL_KERNEL(matmul_kernel_##SUFFIX, T)                                                          \
    CROSS_KERNEL(cross_kernel_##SUFFIX, T)                                                            \
    MATRIX_ENTRY(matmul_terms_##SUFFIX, T, matmul_kernel_##SUFFIX, m *n, m *k, k *n)                  \
    MATRIX_ENTRY(cross_terms_##SUFFIX, T, cross_kernel_##SUFFIX, k *n, m *k, m *n)                    \
    static PyObject *neg_##SUFFIX(PyObject *self, PyObject *args) {                                   \
        Py_buffer out, a;                                                                             \
        if (!PyArg_ParseTuple(args, "w*y*", &out, &a)) return NULL;                                   \
        PyObject *result = NULL;                                                                      \
        if (check_elements(&out, sizeof(T), "out") || check_size(&a, out.len, "a")) goto done;        \
        {                                                                                             \
            Py_ssize_t count = out.len / (Py_ssize_t)sizeof(T);                                       \
            T *o = (T *)out.buf;                                                                      \
            const T *x = (const T *)a.buf;                                                            \
            Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count; i++) o[i] = (T)0 - x[i];          \
            Py_END_ALLOW_THREADS                                                                      \
        }                                                                                             \
        result = Py_NewRef(Py_None);                                                                  \
    done:                                                                                             \
        PyBuffer_Release(&out);                                                                       \
        PyBuffer_Release(&a);                                                                         \
        return result;                                                                                \
    }

#define u64_to_double i64_to_double
#define u128_to_double i128_to_double
RING_FUNCTIONS(u64, u64, int64_t)
RING_FUNCTIONS(u128, u128, i128)

#define ENTRIES(SUFFIX)                                                                             \
    {"add_" #SUFFIX, add_##SUFFIX, METH_VARARGS, "out = a + b"},                                      \
    {"sub_" #SUFFIX, sub_##SUFFIX, METH_VARARGS, "out = a - b"},                                      \
    {"mul_" #SUFFIX, mul_##SUFFIX, METH_VARARGS, "out = a * b"},                                      \
    {"neg_" #SUFFIX, neg_##SUFFIX, METH_VARARGS, "out = -a"},                                         \
    {"add_scalar_" #SUFFIX, add_scalar_##SUFFIX, METH_VARARGS, "out = a + c (c: one element's bytes)"}, \
    {"mul_scalar_" #SUFFIX, mul_scalar_##SUFFIX, METH_VARARGS, "out = a * c (c: one element's bytes)"}, \
    {"ashr_" #SUFFIX, ashr_##SUFFIX, METH_VARARGS, "out = a >> s, arithmetic (two's complement)"},    \
    {"lshr_" #SUFFIX, lshr_##SUFFIX, METH_VARARGS, "out = a >> s, logical"},                          \
    {"shl_" #SUFFIX, shl_##SUFFIX, METH_VARARGS, "out = a << s"},                                     \
    {"mul_terms_" #SUFFIX, mul_terms_##SUFFIX, METH_VARARGS, "out = x0 (y0 + y1) + x1 y0"},           \
    {"to_double_" #SUFFIX, to_double_##SUFFIX, METH_VARARGS, "out (float64) = signed(a), rounded"},   \
    {"sum3_to_double_" #SUFFIX, sum3_to_double_##SUFFIX, METH_VARARGS,                                \
     "out (float64) = signed(a + b + c), rounded"},                                                   \
    {"matmul_terms_" #SUFFIX, matmul_terms_##SUFFIX, METH_VARARGS,                                    \
     "out (m x n) = A0 (B0 + B1) + A1 B0; A1, B1 may be None for A0 B0"},                             \
    {"cross_terms_" #SUFFIX, cross_terms_##SUFFIX, METH_VARARGS,                                      \
     "out (d x e) = X0^T (Y0 + Y1) + X1^T Y0 for row-major X (rows x d), Y (rows x e)"}

static PyMethodDef methods[] = {ENTRIES(u64), ENTRIES(u128), {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_ringkernel",
    .m_doc = "Whole-array kernels for Z_2^64 and Z_2^128.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__ringkernel(void) { return PyModule_Create(&module); }
