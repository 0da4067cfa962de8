/* Optional CPU kernels for the NDA transforms that only move memory (jigsaw, stitch) and for the
 * counter-based random bits of gaussian_noise.
 *
 * negaug works without this module: every kernel has a pure-torch fallback in
 * negaug/nda/native.py that gives bit-identical results (tested). The kernels exist because the
 * torch versions pay a per-row cost (index_select copies one tile row at a time) that puts jigsaw
 * and stitch at 5-8x the time of x.clone() on 32x32 images; here each row is a memcpy of a known
 * size, with no index tensor to build.
 *
 * Arguments are raw addresses and sizes from Python (tensor.data_ptr()); the Python side checks
 * dtypes, contiguity and devices. Parameter values are checked here, before any copy: an index out
 * of range returns an error instead of reading outside a tensor. The GIL is released while copying.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* jigsaw(dst, src, perm, B, C, H, W, k, itemsize): dst and src are contiguous (B, C, H, W) of
 * `itemsize`-byte elements, perm is int64 (B, k*k); output tile t (row-major) of image b shows
 * input tile perm[b, t]. */
static PyObject *jigsaw(PyObject *self, PyObject *args) {
    unsigned long long dst_p, src_p, perm_p;
    long long B, C, H, W, k, itemsize;
    if (!PyArg_ParseTuple(args, "KKKLLLLLL", &dst_p, &src_p, &perm_p, &B, &C, &H, &W, &k, &itemsize))
        return NULL;
    if (k < 1 || H % k || W % k || itemsize <= 0) {
        PyErr_SetString(PyExc_ValueError, "jigsaw kernel: k must divide H and W");
        return NULL;
    }
    char *dst = (char *)(uintptr_t)dst_p;
    const char *src = (const char *)(uintptr_t)src_p;
    const int64_t *perm = (const int64_t *)(uintptr_t)perm_p;
    const long long tiles = k * k;
    for (long long i = 0; i < B * tiles; i++) {
        if (perm[i] < 0 || perm[i] >= tiles) {
            PyErr_Format(PyExc_ValueError, "jigsaw: perm holds %lld, outside [0, %lld)", (long long)perm[i], tiles);
            return NULL;
        }
    }
    const long long th = H / k, tw = W / k;
    const size_t row_bytes = (size_t)(W * itemsize), tile_row_bytes = (size_t)(tw * itemsize);
    const size_t plane_bytes = (size_t)(H * W * itemsize);
    Py_BEGIN_ALLOW_THREADS
    for (long long b = 0; b < B; b++) {
        const int64_t *p = perm + b * tiles;
        for (long long c = 0; c < C; c++) {
            const size_t plane = (size_t)(b * C + c) * plane_bytes;
            for (long long t = 0; t < tiles; t++) {
                const long long out_r = t / k, out_c = t % k, in_r = p[t] / k, in_c = p[t] % k;
                char *d = dst + plane + (size_t)(out_r * th) * row_bytes + (size_t)out_c * tile_row_bytes;
                const char *s = src + plane + (size_t)(in_r * th) * row_bytes + (size_t)in_c * tile_row_bytes;
                for (long long y = 0; y < th; y++)
                    memcpy(d + (size_t)y * row_bytes, s + (size_t)y * row_bytes, tile_row_bytes);
            }
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* stitch(dst, own, pool, partner, split_rows, B, C, H, W, pool_size, itemsize): image b of dst
 * is own[b] with its second half (rows >= H/2 when split_rows[b], else columns >= W/2) taken from
 * pool[partner[b]]. own and dst are (B, C, H, W), pool is (pool_size, C, H, W), all contiguous;
 * partner is int64 (B,), split_rows is bool (B,) stored as bytes. */
static PyObject *stitch(PyObject *self, PyObject *args) {
    unsigned long long dst_p, own_p, pool_p, partner_p, split_p;
    long long B, C, H, W, pool_size, itemsize;
    if (!PyArg_ParseTuple(args, "KKKKKLLLLLL", &dst_p, &own_p, &pool_p, &partner_p, &split_p, &B, &C, &H, &W,
                          &pool_size, &itemsize))
        return NULL;
    char *dst = (char *)(uintptr_t)dst_p;
    const char *own = (const char *)(uintptr_t)own_p, *pool = (const char *)(uintptr_t)pool_p;
    const int64_t *partner = (const int64_t *)(uintptr_t)partner_p;
    const unsigned char *split_rows = (const unsigned char *)(uintptr_t)split_p;
    for (long long b = 0; b < B; b++) {
        if (partner[b] < 0 || partner[b] >= pool_size) {
            PyErr_Format(PyExc_ValueError, "stitch: partner holds %lld, outside [0, %lld)", (long long)partner[b], pool_size);
            return NULL;
        }
    }
    const size_t row_bytes = (size_t)(W * itemsize), plane_bytes = (size_t)(H * row_bytes);
    const size_t top_bytes = (size_t)(H / 2) * row_bytes, left_bytes = (size_t)(W / 2) * (size_t)itemsize;
    Py_BEGIN_ALLOW_THREADS
    for (long long b = 0; b < B; b++) {
        for (long long c = 0; c < C; c++) {
            const size_t own_plane = (size_t)(b * C + c) * plane_bytes;
            const size_t pool_plane = (size_t)(partner[b] * C + c) * plane_bytes;
            char *d = dst + own_plane;
            const char *o = own + own_plane, *q = pool + pool_plane;
            if (split_rows[b]) {
                memcpy(d, o, top_bytes);
                memcpy(d + top_bytes, q + top_bytes, plane_bytes - top_bytes);
            } else {
                for (long long y = 0; y < H; y++) {
                    const size_t row = (size_t)y * row_bytes;
                    memcpy(d + row, o + row, left_bytes);
                    memcpy(d + row + left_bytes, q + row + left_bytes, row_bytes - left_bytes);
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* SplitMix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mix. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* One row of uniform_pairs. Compiled for several instruction sets (GCC/Clang function
 * multiversioning picks one at load time): with AVX-512 the loop runs 8 counters at a time, about
 * 5x faster than scalar code. Integer-exact, so every version gives the same bits. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__linux__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void uniform_row(float *restrict a, float *restrict c, uint64_t key, long long n) {
    const float scale = 1.0f / 16777216.0f;
    for (long long i = 0; i < n; i++) {
        const uint64_t z = mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
        a[i] = (float)(int32_t)((z >> 40) + 1) * scale;
        c[i] = (float)(int32_t)((z >> 16) & 0xFFFFFFULL) * scale;
    }
}

/* uniform_pairs(u1, u2, keys, B, n): for image b and i < n, z = mix64(keys[b] + (i + 1) * golden)
 * (SplitMix64's stream seeded with keys[b]); u1[b, i] = ((z >> 40) + 1) / 2^24 in (0, 1] and
 * u2[b, i] = ((z >> 16) & (2^24 - 1)) / 2^24 in [0, 1), float32 (B, n) each, contiguous. */
static PyObject *uniform_pairs(PyObject *self, PyObject *args) {
    unsigned long long u1_p, u2_p, keys_p;
    long long B, n;
    if (!PyArg_ParseTuple(args, "KKKLL", &u1_p, &u2_p, &keys_p, &B, &n))
        return NULL;
    float *u1 = (float *)(uintptr_t)u1_p, *u2 = (float *)(uintptr_t)u2_p;
    const uint64_t *keys = (const uint64_t *)(uintptr_t)keys_p;
    Py_BEGIN_ALLOW_THREADS
    for (long long b = 0; b < B; b++)
        uniform_row(u1 + b * n, u2 + b * n, keys[b], n);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"jigsaw", jigsaw, METH_VARARGS, "Tile permutation of contiguous (B, C, H, W) images."},
    {"stitch", stitch, METH_VARARGS, "Halves of two images, per image top/bottom or left/right."},
    {"uniform_pairs", uniform_pairs, METH_VARARGS, "Counter-based uniform pairs for Box-Muller."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "Optional CPU kernels for negaug.nda.", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
