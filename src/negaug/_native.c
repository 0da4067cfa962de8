/* Optional CPU kernels for the NDA transforms that only move memory (jigsaw, stitch, cutmix, and
 * the row scatter that assembles a mixture) and for the counter-based random bits of
 * gaussian_noise.
 *
 * negaug works without this module: every kernel has a pure-torch fallback in
 * negaug/nda/native.py that gives bit-identical results (tested). The kernels exist because the
 * torch versions pay a per-row cost (index_select copies one 16-pixel tile row at a time on 32x32
 * images) or several passes over the batch; here each row is one memcpy of a known size and no
 * index tensor is built.
 *
 * Arguments are raw addresses and sizes from Python (tensor.data_ptr()); the Python side checks
 * dtypes, contiguity and devices. Index values are checked here before anything is copied: a value
 * out of range raises ValueError instead of reading outside a tensor. The GIL is released while
 * copying.
 *
 * Row indices: a kernel writes R output images dst[dst_rows[r]] (r < R) of a batch of M images,
 * computed from the input images src[src_rows[r]] of a batch of N images; a null dst_rows or
 * src_rows means r itself. `mixture` uses them to write each component's images straight into
 * its output without gathering inputs or concatenating pieces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long addr_t;

/* memcpy for the short rows these kernels copy (a 16-pixel tile row is 64 bytes): fixed-size
 * __builtin_memcpy calls compile to a few vector moves, where a libc memcpy call per row cost
 * more than the copy itself. */
static inline void copy_bytes(char *restrict d, const char *restrict s, size_t n) {
    if (n > 512) {
        memcpy(d, s, n);
        return;
    }
    for (; n >= 64; n -= 64, d += 64, s += 64) __builtin_memcpy(d, s, 64);
    if (n >= 32) { __builtin_memcpy(d, s, 32); n -= 32; d += 32; s += 32; }
    if (n >= 16) { __builtin_memcpy(d, s, 16); n -= 16; d += 16; s += 16; }
    if (n >= 8) { __builtin_memcpy(d, s, 8); n -= 8; d += 8; s += 8; }
    if (n >= 4) { __builtin_memcpy(d, s, 4); n -= 4; d += 4; s += 4; }
    if (n >= 2) { __builtin_memcpy(d, s, 2); n -= 2; d += 2; s += 2; }
    if (n) *d = *s;
}

#define ROW(rows, r) ((rows) ? (long long)(rows)[r] : (long long)(r))

static int check_index(const int64_t *values, long long count, long long limit, const char *what) {
    if (!values)
        return 0;
    for (long long i = 0; i < count; i++) {
        if (values[i] < 0 || values[i] >= limit) {
            PyErr_Format(PyExc_ValueError, "%s holds %lld, outside [0, %lld)", what, (long long)values[i], limit);
            return -1;
        }
    }
    return 0;
}

typedef struct Batch Batch;
typedef void (*RangeFn)(const Batch *, long long, long long, long long);

struct Batch {
    char *dst;
    const int64_t *dst_rows;
    const char *src;
    const int64_t *src_rows;
    long long M, N, R, C, H, W, itemsize, threads;
    size_t row_bytes, plane_bytes, image_bytes;
    /* per-kernel parameters */
    const int64_t *perm, *partner, *box;
    const unsigned char *split_rows;
    const float *gamma;
    long long k;
    char *scratch; /* per-thread scratch space: thread t owns scratch + t * scratch_bytes */
    size_t scratch_bytes;
};

static int setup_batch(Batch *b, addr_t dst, addr_t dst_rows, addr_t src, addr_t src_rows) {
    b->dst = (char *)(uintptr_t)dst;
    b->dst_rows = (const int64_t *)(uintptr_t)dst_rows;
    b->src = (const char *)(uintptr_t)src;
    b->src_rows = (const int64_t *)(uintptr_t)src_rows;
    if (b->R < 0 || b->C <= 0 || b->H <= 0 || b->W <= 0 || b->itemsize <= 0) {
        PyErr_SetString(PyExc_ValueError, "negaug._native: sizes must be positive");
        return -1;
    }
    if ((!b->dst_rows && b->R > b->M) || (!b->src_rows && b->R > b->N)) {
        PyErr_SetString(PyExc_ValueError, "negaug._native: more rows than images");
        return -1;
    }
    if (check_index(b->dst_rows, b->R, b->M, "output rows") || check_index(b->src_rows, b->R, b->N, "input rows"))
        return -1;
    b->row_bytes = (size_t)(b->W * b->itemsize);
    b->plane_bytes = (size_t)b->H * b->row_bytes;
    b->image_bytes = (size_t)b->C * b->plane_bytes;
    return 0;
}

#define BATCH_FORMAT "KKLKKLLLLLLL"
#define BATCH_ARGS(b, dst, dst_rows, src, src_rows) \
    &dst, &dst_rows, &(b).M, &src, &src_rows, &(b).N, &(b).R, &(b).C, &(b).H, &(b).W, &(b).itemsize, &(b).threads

/* Threads: the kernels run on torch's own OpenMP thread pool when torch uses GNU OpenMP (the
 * libgomp that torch loaded, found by negaug/nda/native.py and handed over with use_openmp):
 * the same threads torch's parallel ops use, so no extra threads compete for the cores. A private
 * pthread per call measured 2-5x slower here (start-up, and contention with torch's OpenMP
 * threads, which spin for a while after each parallel op). Without it the kernels run serially. */
typedef void (*gomp_parallel_t)(void (*)(void *), void *, unsigned, unsigned);
typedef int (*omp_int_t)(void);
static gomp_parallel_t gomp_parallel = NULL;
static omp_int_t omp_thread_num = NULL, omp_num_threads = NULL;

static PyObject *use_openmp(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD); /* only a library already loaded by torch */
    if (handle) {
        gomp_parallel = (gomp_parallel_t)dlsym(handle, "GOMP_parallel");
        omp_thread_num = (omp_int_t)dlsym(handle, "omp_get_thread_num");
        omp_num_threads = (omp_int_t)dlsym(handle, "omp_get_num_threads");
    }
    if (!gomp_parallel || !omp_thread_num || !omp_num_threads)
        gomp_parallel = NULL;
    return PyBool_FromLong(gomp_parallel != NULL);
}

typedef struct {
    const Batch *b;
    RangeFn fn;
} Task;

static void run_task(void *data) {
    const Task *task = (const Task *)data;
    const long long t = omp_thread_num(), n = omp_num_threads(), R = task->b->R;
    task->fn(task->b, R * t / n, R * (t + 1) / n, t);
}

/* Below this many bytes per thread a parallel region costs more than it saves. */
#define MIN_BYTES_PER_THREAD (256 * 1024)

/* Runs fn over the images [0, R), split into contiguous ranges over up to `threads` threads (the
 * caller passes torch.get_num_threads()). Every image is written by exactly one thread, so the
 * result does not depend on the number of threads. */
static void run_rows(Batch *b, RangeFn fn) {
    long long threads = b->threads;
    const long long by_size = (long long)((size_t)b->R * b->image_bytes / MIN_BYTES_PER_THREAD);
    if (threads > by_size) threads = by_size;
    if (threads > b->R) threads = b->R;
    if (threads < 2 || !gomp_parallel) {
        fn(b, 0, b->R, 0);
        return;
    }
    Task task = {b, fn};
    gomp_parallel(run_task, &task, (unsigned)threads, 0);
}

/* run_rows with the GIL released; returns None for the caller to return. */
static PyObject *run_released(Batch *b, RangeFn fn) {
    Py_BEGIN_ALLOW_THREADS
    run_rows(b, fn);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The first byte of output image r and of input image r (after the row indices). */
static inline char *dst_image(const Batch *b, long long r) { return b->dst + ROW(b->dst_rows, r) * b->image_bytes; }
static inline const char *src_image(const Batch *b, long long r) { return b->src + ROW(b->src_rows, r) * b->image_bytes; }

static void scatter_range(const Batch *b, long long r0, long long r1, long long thread) {
    for (long long r = r0; r < r1; r++)
        copy_bytes(dst_image(b, r), src_image(b, r), b->image_bytes);
}

/* scatter_rows(dst, dst_rows, M, src, src_rows, N, R, C, H, W, itemsize):
 * dst[dst_rows[r]] = src[src_rows[r]], whole images. */
static PyObject *scatter_rows(PyObject *self, PyObject *args) {
    Batch b = {0};
    addr_t dst, dst_rows, src, src_rows;
    if (!PyArg_ParseTuple(args, BATCH_FORMAT, BATCH_ARGS(b, dst, dst_rows, src, src_rows)))
        return NULL;
    if (setup_batch(&b, dst, dst_rows, src, src_rows))
        return NULL;
    return run_released(&b, scatter_range);
}

/* Copies `count` rows of `bytes` bytes, `stride` apart in both src and dst. The sizes of a tile row
 * of a 32, 64 or 128 pixel float32 image with k = 2 get their own loops, where the fixed-size copy
 * compiles to a few vector moves with no size checks. */
static inline void copy_rows(char *restrict d, const char *restrict s, size_t bytes, size_t stride, long long count) {
#define FIXED(N) \
    case N: \
        for (long long y = 0; y < count; y++) __builtin_memcpy(d + (size_t)y * stride, s + (size_t)y * stride, N); \
        return;
    switch (bytes) {
        FIXED(32) FIXED(64) FIXED(128) FIXED(256)
    default:
        for (long long y = 0; y < count; y++) copy_bytes(d + (size_t)y * stride, s + (size_t)y * stride, bytes);
    }
#undef FIXED
}

static void jigsaw_range(const Batch *b, long long r0, long long r1, long long thread) {
    const long long k = b->k, tiles = k * k, th = b->H / k;
    const size_t tile_row_bytes = (size_t)(b->W / k * b->itemsize);
    for (long long r = r0; r < r1; r++) {
        const int64_t *p = b->perm + r * tiles;
        char *d_image = dst_image(b, r);
        const char *s_image = src_image(b, r);
        for (long long c = 0; c < b->C; c++) {
            char *d_plane = d_image + c * b->plane_bytes;
            const char *s_plane = s_image + c * b->plane_bytes;
            for (long long t = 0; t < tiles; t++) {
                char *d = d_plane + (size_t)(t / k * th) * b->row_bytes + (size_t)(t % k) * tile_row_bytes;
                const char *s = s_plane + (size_t)(p[t] / k * th) * b->row_bytes + (size_t)(p[t] % k) * tile_row_bytes;
                copy_rows(d, s, tile_row_bytes, b->row_bytes, th);
            }
        }
    }
}

/* jigsaw(<batch>, perm, k): output tile t (row-major, k x k tiles) of image r shows input tile
 * perm[r, t]; perm is int64 (R, k*k). */
static PyObject *jigsaw(PyObject *self, PyObject *args) {
    Batch b = {0};
    addr_t dst, dst_rows, src, src_rows, perm_p;
    if (!PyArg_ParseTuple(args, BATCH_FORMAT "KL", BATCH_ARGS(b, dst, dst_rows, src, src_rows), &perm_p, &b.k))
        return NULL;
    if (setup_batch(&b, dst, dst_rows, src, src_rows))
        return NULL;
    if (b.k < 1 || b.H % b.k || b.W % b.k) {
        PyErr_SetString(PyExc_ValueError, "jigsaw: k must divide the image height and width");
        return NULL;
    }
    b.perm = (const int64_t *)(uintptr_t)perm_p;
    if (check_index(b.perm, b.R * b.k * b.k, b.k * b.k, "jigsaw: perm"))
        return NULL;
    return run_released(&b, jigsaw_range);
}

static void stitch_range(const Batch *b, long long r0, long long r1, long long thread) {
    const size_t top_bytes = (size_t)(b->H / 2) * b->row_bytes, left_bytes = (size_t)(b->W / 2 * b->itemsize);
    for (long long r = r0; r < r1; r++) {
        char *d_image = dst_image(b, r);
        const char *o_image = src_image(b, r);
        const char *q_image = b->src + b->partner[r] * b->image_bytes;
        for (long long c = 0; c < b->C; c++) {
            char *d = d_image + c * b->plane_bytes;
            const char *o = o_image + c * b->plane_bytes, *q = q_image + c * b->plane_bytes;
            if (b->split_rows[r]) {
                copy_bytes(d, o, top_bytes);
                copy_bytes(d + top_bytes, q + top_bytes, b->plane_bytes - top_bytes);
            } else {
                copy_rows(d, o, left_bytes, b->row_bytes, b->H);
                copy_rows(d + left_bytes, q + left_bytes, b->row_bytes - left_bytes, b->row_bytes, b->H);
            }
        }
    }
}

/* stitch(<batch>, partner, split_rows): image r is src[src_rows[r]] with its second half (rows
 * >= H/2 when split_rows[r], else columns >= W/2) taken from src[partner[r]]. partner is int64
 * (R,) into the N input images, split_rows is bool (R,) stored as bytes. */
static PyObject *stitch(PyObject *self, PyObject *args) {
    Batch b = {0};
    addr_t dst, dst_rows, src, src_rows, partner_p, split_p;
    if (!PyArg_ParseTuple(args, BATCH_FORMAT "KK", BATCH_ARGS(b, dst, dst_rows, src, src_rows), &partner_p, &split_p))
        return NULL;
    if (setup_batch(&b, dst, dst_rows, src, src_rows))
        return NULL;
    b.partner = (const int64_t *)(uintptr_t)partner_p;
    b.split_rows = (const unsigned char *)(uintptr_t)split_p;
    if (check_index(b.partner, b.R, b.N, "stitch: partner"))
        return NULL;
    return run_released(&b, stitch_range);
}

static int check_boxes(const Batch *b, const char *what) {
    for (long long r = 0; r < b->R; r++) {
        const int64_t *x = b->box + 4 * r;
        if (x[0] < 0 || x[1] < 0 || x[2] < 0 || x[3] < 0 || x[0] + x[2] > b->H || x[1] + x[3] > b->W) {
            PyErr_Format(PyExc_ValueError, "%s: box (%lld, %lld, %lld, %lld) does not fit a %lldx%lld image", what,
                         (long long)x[0], (long long)x[1], (long long)x[2], (long long)x[3], b->H, b->W);
            return -1;
        }
    }
    return 0;
}

static void cutmix_range(const Batch *b, long long r0, long long r1, long long thread) {
    for (long long r = r0; r < r1; r++) {
        const int64_t *x = b->box + 4 * r;
        char *d_image = dst_image(b, r);
        const char *o_image = src_image(b, r);
        const char *q_image = b->src + b->partner[r] * b->image_bytes;
        const size_t offset = (size_t)x[1] * b->itemsize, span = (size_t)x[3] * b->itemsize;
        copy_bytes(d_image, o_image, b->image_bytes);
        for (long long c = 0; c < b->C; c++) {
            const size_t at = c * b->plane_bytes + (size_t)x[0] * b->row_bytes + offset;
            copy_rows(d_image + at, q_image + at, span, b->row_bytes, x[2]);
        }
    }
}

/* cutmix(<batch>, partner, box): image r is src[src_rows[r]] with the box (top, left, height,
 * width) = box[r] (int64 (R, 4)) taken from src[partner[r]] at the same place. */
static PyObject *cutmix(PyObject *self, PyObject *args) {
    Batch b = {0};
    addr_t dst, dst_rows, src, src_rows, partner_p, box_p;
    if (!PyArg_ParseTuple(args, BATCH_FORMAT "KK", BATCH_ARGS(b, dst, dst_rows, src, src_rows), &partner_p, &box_p))
        return NULL;
    if (setup_batch(&b, dst, dst_rows, src, src_rows))
        return NULL;
    b.partner = (const int64_t *)(uintptr_t)partner_p;
    b.box = (const int64_t *)(uintptr_t)box_p;
    if (check_index(b.partner, b.R, b.N, "cutmix: partner"))
        return NULL;
    if (check_boxes(&b, "cutmix"))
        return NULL;
    return run_released(&b, cutmix_range);
}

static void cutout_range(const Batch *b, long long r0, long long r1, long long thread) {
    for (long long r = r0; r < r1; r++) {
        const int64_t *x = b->box + 4 * r;
        char *d_image = dst_image(b, r);
        const char *o_image = src_image(b, r);
        copy_bytes(d_image, o_image, b->image_bytes);
        if (x[2] == 0 || x[3] == 0)
            continue;
        const double area = (double)(x[2] * x[3]);
        for (long long c = 0; c < b->C; c++) {
            const size_t plane = c * b->plane_bytes;
            /* 8 partial sums break the dependency chain of one accumulator (4 cycles per add); the
             * float64 sum of these values is exact, so grouping does not change it. */
            double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (long long y = x[0]; y < x[0] + x[2]; y++) {
                const char *row = o_image + plane + (size_t)y * b->row_bytes;
                if (b->itemsize == 4)
                    for (long long i = x[1]; i < x[1] + x[3]; i++) part[i & 7] += ((const float *)row)[i];
                else
                    for (long long i = x[1]; i < x[1] + x[3]; i++) part[i & 7] += ((const double *)row)[i];
            }
            const double sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
            const double mean = sum / area;
            for (long long y = x[0]; y < x[0] + x[2]; y++) {
                char *row = d_image + plane + (size_t)y * b->row_bytes;
                if (b->itemsize == 4)
                    for (long long i = x[1]; i < x[1] + x[3]; i++) ((float *)row)[i] = (float)mean;
                else
                    for (long long i = x[1]; i < x[1] + x[3]; i++) ((double *)row)[i] = mean;
            }
        }
    }
}

/* cutout(<batch>, box): image r is src[src_rows[r]] with the box (top, left, height, width) =
 * box[r] filled, per channel, with the box's mean: summed in float64, divided by the area in
 * float64, rounded once to the element type. float32 and float64 images only (itemsize 4 or 8).
 * The float64 sum of float32 values is exact (so independent of the order of summation, and
 * equal to the torch fallback's) unless a box mixes values below ~2^-29 in magnitude with values
 * near 1. */
static PyObject *cutout(PyObject *self, PyObject *args) {
    Batch b = {0};
    addr_t dst, dst_rows, src, src_rows, box_p;
    if (!PyArg_ParseTuple(args, BATCH_FORMAT "K", BATCH_ARGS(b, dst, dst_rows, src, src_rows), &box_p))
        return NULL;
    if (setup_batch(&b, dst, dst_rows, src, src_rows))
        return NULL;
    if (b.itemsize != 4 && b.itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "cutout kernel: float32 or float64 images only");
        return NULL;
    }
    b.box = (const int64_t *)(uintptr_t)box_p;
    if (check_boxes(&b, "cutout"))
        return NULL;
    return run_released(&b, cutout_range);
}

/* random_crop: bilinear resampling of the box (top, left, height, width), fractions of H and W
 * (float32 (R, 4)), back to H x W; float32 images only. Separable, columns first, with the taps of
 * negaug/nda/native.py's crop_resize: coord = (start * size + (i + 0.5) * length) - 0.5, lower =
 * floor(coord) (clamped to the image), weight = coord - lower, and each pass computes
 * below + (above - below) * weight in float32, the same operations as the torch fallback. */
static void crop_taps(float start, float length, long long size, long long *lower, long long *upper, float *weight) {
    for (long long i = 0; i < size; i++) {
        const float centre = (float)i + 0.5f;
        const float coord = (start * (float)size + centre * length) - 0.5f;
        const float low = floorf(coord);
        long long lo = (long long)low;
        long long hi = lo + 1;
        lo = lo < 0 ? 0 : (lo > size - 1 ? size - 1 : lo);
        hi = hi < 0 ? 0 : (hi > size - 1 ? size - 1 : hi);
        lower[i] = lo;
        upper[i] = hi;
        weight[i] = coord - low;
    }
}

static void crop_range(const Batch *b, long long r0, long long r1, long long thread) {
    const long long H = b->H, W = b->W;
    char *scratch = b->scratch + (size_t)thread * b->scratch_bytes;
    long long *lo_y = (long long *)scratch, *hi_y = lo_y + H, *lo_x = hi_y + H, *hi_x = lo_x + W;
    float *w_y = (float *)(hi_x + W), *w_x = w_y + H, *tmp = w_x + W;
    const float *box = (const float *)b->box;
    for (long long r = r0; r < r1; r++) {
        crop_taps(box[4 * r + 0], box[4 * r + 2], H, lo_y, hi_y, w_y);
        crop_taps(box[4 * r + 1], box[4 * r + 3], W, lo_x, hi_x, w_x);
        const long long first = lo_y[0], last = hi_y[H - 1]; /* the source rows the output needs */
        float *d_image = (float *)dst_image(b, r);
        const float *s_image = (const float *)src_image(b, r);
        for (long long c = 0; c < b->C; c++) {
            const float *s = s_image + c * H * W;
            float *d = d_image + c * H * W;
            for (long long y = first; y <= last; y++) {
                const float *row = s + y * W;
                float *t = tmp + y * W;
                for (long long x = 0; x < W; x++) {
                    const float below = row[lo_x[x]], above = row[hi_x[x]];
                    t[x] = below + (above - below) * w_x[x];
                }
            }
            for (long long y = 0; y < H; y++) {
                const float *below = tmp + lo_y[y] * W, *above = tmp + hi_y[y] * W;
                const float w = w_y[y];
                float *out = d + y * W;
                for (long long x = 0; x < W; x++) out[x] = below[x] + (above[x] - below[x]) * w;
            }
        }
    }
}

static PyObject *random_crop(PyObject *self, PyObject *args) {
    Batch b = {0};
    addr_t dst, dst_rows, src, src_rows, box_p;
    if (!PyArg_ParseTuple(args, BATCH_FORMAT "K", BATCH_ARGS(b, dst, dst_rows, src, src_rows), &box_p))
        return NULL;
    if (setup_batch(&b, dst, dst_rows, src, src_rows))
        return NULL;
    if (b.itemsize != 4) {
        PyErr_SetString(PyExc_ValueError, "random_crop kernel: float32 images only");
        return NULL;
    }
    b.box = (const int64_t *)(uintptr_t)box_p; /* float32 (R, 4), read as floats */
    /* taps (4 int64 and 2 float32 per pixel of a side) and one column-resampled plane, per thread */
    b.scratch_bytes = (size_t)(2 * b.H + 2 * b.W) * sizeof(long long) + (size_t)(b.H + b.W + b.H * b.W) * sizeof(float);
    b.scratch = (char *)malloc(b.scratch_bytes * (size_t)(b.threads > 1 ? b.threads : 1));
    if (!b.scratch)
        return PyErr_NoMemory();
    PyObject *result = run_released(&b, crop_range);
    free(b.scratch);
    return result;
}

static void mixup_range(const Batch *b, long long r0, long long r1, long long thread) {
    const long long n = b->C * b->H * b->W;
    for (long long r = r0; r < r1; r++) {
        float *restrict d = (float *)dst_image(b, r);
        const float *restrict o = (const float *)src_image(b, r);
        const float *restrict q = (const float *)(b->src + b->partner[r] * b->image_bytes);
        const float gamma = b->gamma[r];
        for (long long i = 0; i < n; i++) d[i] = q[i] + (o[i] - q[i]) * gamma;
    }
}

/* mixup(<batch>, partner, gamma): image r is partner + (own - partner) * gamma[r] (float32, three
 * roundings, the same operations as the torch fallback), own = src[src_rows[r]], partner =
 * src[partner[r]]. float32 images only. */
static PyObject *mixup(PyObject *self, PyObject *args) {
    Batch b = {0};
    addr_t dst, dst_rows, src, src_rows, partner_p, gamma_p;
    if (!PyArg_ParseTuple(args, BATCH_FORMAT "KK", BATCH_ARGS(b, dst, dst_rows, src, src_rows), &partner_p, &gamma_p))
        return NULL;
    if (setup_batch(&b, dst, dst_rows, src, src_rows))
        return NULL;
    if (b.itemsize != 4) {
        PyErr_SetString(PyExc_ValueError, "mixup kernel: float32 images only");
        return NULL;
    }
    b.partner = (const int64_t *)(uintptr_t)partner_p;
    b.gamma = (const float *)(uintptr_t)gamma_p;
    if (check_index(b.partner, b.R, b.N, "mixup: partner"))
        return NULL;
    return run_released(&b, mixup_range);
}

/* SplitMix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mix. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Standard normal noise for gaussian_noise: Box-Muller on the counter-based SplitMix64 bits, with
 * our own log, sin and cos (range reduction + polynomials, float32), written so that the torch
 * fallback (negaug/nda/native.py: box_muller) performs exactly the same IEEE operations in the
 * same order and gets the same bits. The module is compiled with -ffp-contract=off so that no
 * multiply-add is fused, and -fno-math-errno so that sqrt is the instruction. Constants are
 * double values rounded to float, as torch rounds a Python float scalar.
 *
 * For pair i of row b: z = mix64(key_b + (i + 1) * golden); k1 = (z >> 40) + 1 in [1, 2^24],
 * k2 = (z >> 16) mod 2^24. u1 = k1 / 2^24 in (0, 1], angle = 2 pi k2 / 2^24.
 * radius = sqrt(-2 ln u1) with ln u1 = (e - 24) ln 2 + ln m, k1 = m 2^e, m in [sqrt(1/2), sqrt(2)),
 * ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.172, odd series to t^9 (error < 4e-10).
 * The angle's top two bits (rounded) pick the quadrant q, the rest phi in [-pi/4, pi/4); sin and
 * cos of phi by Taylor series to phi^9 / phi^10 (error < 2e-9), then rotated by q * 90 degrees.
 * All in float32: results within a few float32 ulps of the exact values.
 * out[b, i] = radius cos(angle), out[b, pairs + i] = radius sin(angle). */
#define F(x) ((float)(x))
#define LN2 0.69314718055994530942
#define SQRT2 1.41421356237309504880
#define PI_OVER_2_23 (3.14159265358979323846 / 8388608.0)

static inline float power_of_two(long long e) { /* 2^e for -126 <= e <= 127, exact */
    union {
        uint32_t bits;
        float value;
    } u = {(uint32_t)(127 + e) << 23};
    return u.value;
}

/* One row: branch-free so that the compiler vectorises it (16 pairs at a time with AVX-512); the
 * clones give the same bits because no operation is fused or reordered (-ffp-contract=off). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__linux__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void normal_row(float *restrict cos_out, float *restrict sin_out, uint64_t key, long long pairs) {
    for (long long i = 0; i < pairs; i++) {
        const uint64_t z = mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
        const int32_t k1 = (int32_t)((z >> 40) + 1), k2 = (int32_t)((z >> 16) & 0xFFFFFFULL);
        /* ln(k1 / 2^24) */
        const int32_t e0 = 31 - __builtin_clz((unsigned)k1);
        const float m0 = (float)k1 * power_of_two(-e0); /* in [1, 2) */
        const int32_t high = m0 > F(SQRT2);
        const float m = high ? m0 * 0.5f : m0;
        const float e = (float)(e0 + high);
        const float t = (m - 1.0f) / (m + 1.0f);
        const float t2 = t * t;
        float poly = t2 * F(1.0 / 9.0) + F(1.0 / 7.0);
        poly = poly * t2 + F(1.0 / 5.0);
        poly = poly * t2 + F(1.0 / 3.0);
        poly = poly * t2 + 1.0f;
        const float log_u1 = (e - 24.0f) * F(LN2) + (t * poly) * 2.0f;
        const float radius = __builtin_sqrtf(log_u1 * -2.0f);
        /* angle = turn * pi/2 + phi */
        const int32_t turn = (k2 + 0x200000) >> 22; /* nearest quarter turn, 0..4 */
        const float phi = (float)(k2 - (turn << 22)) * F(PI_OVER_2_23);
        const float p2 = phi * phi;
        float sin_poly = p2 * F(1.0 / 362880.0) + F(-1.0 / 5040.0);
        sin_poly = sin_poly * p2 + F(1.0 / 120.0);
        sin_poly = sin_poly * p2 + F(-1.0 / 6.0);
        sin_poly = sin_poly * p2 + 1.0f;
        const float sin_phi = phi * sin_poly;
        float cos_phi = p2 * F(-1.0 / 3628800.0) + F(1.0 / 40320.0);
        cos_phi = cos_phi * p2 + F(-1.0 / 720.0);
        cos_phi = cos_phi * p2 + F(1.0 / 24.0);
        cos_phi = cos_phi * p2 + F(-1.0 / 2.0);
        cos_phi = cos_phi * p2 + 1.0f;
        const int32_t q = turn & 3;
        const float c = q == 0 ? cos_phi : (q == 1 ? -sin_phi : (q == 2 ? -cos_phi : sin_phi));
        const float s = q == 0 ? sin_phi : (q == 1 ? cos_phi : (q == 2 ? -sin_phi : -cos_phi));
        cos_out[i] = radius * c;
        sin_out[i] = radius * s;
    }
}

typedef struct {
    float *out;
    const uint64_t *keys;
    long long rows, pairs, size;
} NoiseTask;

static void noise_rows(const NoiseTask *task, long long r0, long long r1) {
    float last[2];
    for (long long b = r0; b < r1; b++) {
        float *row = task->out + b * task->size;
        const long long full = task->size - task->pairs; /* sines that fit: pairs or pairs - 1 */
        normal_row(row, row + task->pairs, task->keys[b], full);
        if (full < task->pairs) { /* odd size: the last pair's sine does not fit */
            /* rerun the last pair alone (counter pairs - 1) and keep its cosine */
            normal_row(last, last + 1, task->keys[b] + (uint64_t)full * 0x9e3779b97f4a7c15ULL, 1);
            row[full] = last[0];
        }
    }
}

static void run_noise_task(void *data) {
    const NoiseTask *task = (const NoiseTask *)data;
    const long long t = omp_thread_num(), n = omp_num_threads();
    noise_rows(task, task->rows * t / n, task->rows * (t + 1) / n);
}

/* normal_rows(out, keys, B, size, threads): float32 (B, size) standard normal noise, row b from
 * keys[b] alone (see above). */
static PyObject *normal_rows(PyObject *self, PyObject *args) {
    addr_t out_p, keys_p;
    long long B, size, threads;
    if (!PyArg_ParseTuple(args, "KKLLL", &out_p, &keys_p, &B, &size, &threads))
        return NULL;
    NoiseTask task = {(float *)(uintptr_t)out_p, (const uint64_t *)(uintptr_t)keys_p, B, (size + 1) / 2, size};
    if (threads > B) threads = B;
    if ((long long)((size_t)B * (size_t)size / 65536) < threads) threads = (long long)((size_t)B * (size_t)size / 65536);
    Py_BEGIN_ALLOW_THREADS
    if (threads >= 2 && gomp_parallel)
        gomp_parallel(run_noise_task, &task, (unsigned)threads, 0);
    else
        noise_rows(&task, 0, B);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Sorts the indices 0..n-1 by `keys` (as signed int64) into `order`: two stable counting-sort
 * passes on the top 16 bits (sign bit flipped, so unsigned order = signed order), then an
 * insertion sort on the full keys, which only has to fix the rare ties in the top 16 bits. An
 * exact sort; about 10x faster than qsort with a comparator for n = 256. `tmp_keys` and `tmp`
 * are scratch space of n entries. */
static void sort_by_keys(uint64_t *keys, int64_t *order, uint64_t *tmp_keys, int64_t *tmp, long long n) {
    for (long long i = 0; i < n; i++) {
        keys[i] ^= 0x8000000000000000ULL;
        order[i] = i;
    }
    for (int shift = 48; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (long long i = 0; i < n; i++) count[((keys[i] >> shift) & 0xFF) + 1]++;
        for (int d = 0; d < 256; d++) count[d + 1] += count[d];
        for (long long i = 0; i < n; i++) {
            const size_t at = count[(keys[i] >> shift) & 0xFF]++;
            tmp_keys[at] = keys[i];
            tmp[at] = order[i];
        }
        memcpy(keys, tmp_keys, (size_t)n * sizeof(uint64_t));
        memcpy(order, tmp, (size_t)n * sizeof(int64_t));
    }
    for (long long i = 1; i < n; i++) {
        const uint64_t key = keys[i];
        const int64_t index = order[i];
        long long j = i - 1;
        for (; j >= 0 && keys[j] > key; j--) {
            keys[j + 1] = keys[j];
            order[j + 1] = order[j];
        }
        keys[j + 1] = key;
        order[j + 1] = index;
    }
}

/* derangement(out, n, key): a random derangement of range(n) into out (int64 (n,)); returns the
 * number of tries. Try t is the permutation that sorts the keys mix64(key + (t*n + i + 1) * golden)
 * (as signed int64; mix64 is a bijection, so the n keys are distinct and the order is total),
 * accepted when it has no fixed point: uniform over derangements, about e = 2.72 tries. */
static PyObject *derangement(PyObject *self, PyObject *args) {
    addr_t out_p;
    long long n, key, max_tries;
    if (!PyArg_ParseTuple(args, "KLLL", &out_p, &n, &key, &max_tries))
        return NULL;
    if (n < 2) {
        PyErr_SetString(PyExc_ValueError, "a derangement needs at least 2 items");
        return NULL;
    }
    int64_t *out = (int64_t *)(uintptr_t)out_p;
    uint64_t *keys = (uint64_t *)malloc((size_t)n * 2 * sizeof(uint64_t));
    int64_t *tmp = (int64_t *)malloc((size_t)n * sizeof(int64_t));
    if (!keys || !tmp) {
        free(keys);
        free(tmp);
        return PyErr_NoMemory();
    }
    long long tries = 0;
    int found = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; tries < max_tries && !found; tries++) {
        for (long long i = 0; i < n; i++) {
            const uint64_t counter = (uint64_t)tries * (uint64_t)n + (uint64_t)i + 1;
            keys[i] = mix64((uint64_t)key + counter * 0x9e3779b97f4a7c15ULL);
        }
        sort_by_keys(keys, out, keys + n, tmp, n);
        found = 1;
        for (long long i = 0; i < n; i++)
            if (out[i] == i) found = 0;
    }
    Py_END_ALLOW_THREADS
    free(keys);
    free(tmp);
    if (!found) {
        PyErr_SetString(PyExc_RuntimeError, "derangement: rejection sampling did not terminate");
        return NULL;
    }
    return PyLong_FromLongLong(tries);
}

/* patch_boxes(out, u, B, H, W): int64 (B, 4) boxes (top, left, height, width) from float64 (B, 4)
 * uniforms in [0, 1): side = low + floor(u * count) with low = ceil(S/3), count = floor(S/2) -
 * low + 1, then start = floor(u * (S - side + 1)). Floors of float64 products, as the torch
 * fallback (negaug.nda.transforms.sample_patch_boxes) computes them. */
static PyObject *patch_boxes(PyObject *self, PyObject *args) {
    addr_t out_p, u_p;
    long long B, H, W;
    if (!PyArg_ParseTuple(args, "KKLLL", &out_p, &u_p, &B, &H, &W))
        return NULL;
    int64_t *out = (int64_t *)(uintptr_t)out_p;
    const double *u = (const double *)(uintptr_t)u_p;
    const double low_h = (double)((H + 2) / 3), low_w = (double)((W + 2) / 3);
    const double count_h = (double)(H / 2) - low_h + 1.0, count_w = (double)(W / 2) - low_w + 1.0;
    for (long long b = 0; b < B; b++) {
        const double *v = u + 4 * b;
        const double side_h = floor(v[0] * count_h) + low_h, side_w = floor(v[1] * count_w) + low_w;
        out[4 * b + 0] = (int64_t)floor(v[2] * (((double)H - side_h) + 1.0));
        out[4 * b + 1] = (int64_t)floor(v[3] * (((double)W - side_w) + 1.0));
        out[4 * b + 2] = (int64_t)side_h;
        out[4 * b + 3] = (int64_t)side_w;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"use_openmp", use_openmp, METH_VARARGS, "Run kernels on the GNU OpenMP pool of the already loaded library at this path."},
    {"scatter_rows", scatter_rows, METH_VARARGS, "dst[dst_rows] = src[src_rows], whole images."},
    {"jigsaw", jigsaw, METH_VARARGS, "Tile permutation of contiguous (B, C, H, W) images."},
    {"stitch", stitch, METH_VARARGS, "Halves of two images, per image top/bottom or left/right."},
    {"cutmix", cutmix, METH_VARARGS, "A box of each image replaced by the same box of its partner."},
    {"random_crop", random_crop, METH_VARARGS, "Bilinear resampling of a box of each image back to full size."},
    {"mixup", mixup, METH_VARARGS, "Each image blended with its partner: partner + (own - partner) * gamma."},
    {"cutout", cutout, METH_VARARGS, "A box of each image filled with its per-channel mean."},
    {"derangement", derangement, METH_VARARGS, "A random derangement from a 64-bit key (sorted hash keys, rejection)."},
    {"patch_boxes", patch_boxes, METH_VARARGS, "Cutout / cutmix boxes from uniforms."},
    {"normal_rows", normal_rows, METH_VARARGS, "Counter-based standard normal noise, one row per key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "Optional CPU kernels for negaug.nda.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
