/* count_lines: the newlines of a read and whether it is all ASCII, in C, without the GIL.
 *
 * The same pair as large_reads.python_count_lines, the reference. Counting a
 * mixed log's lines with bytearray.count held the GIL for 57 ms of a 138 MB
 * file, more than reading and scanning it together; here SSE2 compares 16
 * bytes at a time, sums the matches in byte lanes, and ORs the bytes for the
 * ASCII test in the same pass. tests/test_native_line_count.py compares the two.
 */
#include "_window.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Newlines in data[start:end); *high gets every byte's top bit ORed together (0: all ASCII). */
static Py_ssize_t
count(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, unsigned *high)
{
    Py_ssize_t lines = 0, j = start;
    unsigned top = 0;
#if defined(__SSE2__)
    const __m128i newline = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    __m128i any = zero;
    while (j + 16 <= end) {
        __m128i lanes = zero; /* each lane counts its matches; 255 rounds at most before it would wrap */
        for (int round = 0; round < 255 && j + 16 <= end; round++, j += 16) {
            __m128i bytes = _mm_loadu_si128((const __m128i *)(data + j));
            lanes = _mm_sub_epi8(lanes, _mm_cmpeq_epi8(bytes, newline)); /* a match is -1 */
            any = _mm_or_si128(any, bytes);
        }
        __m128i sums = _mm_sad_epu8(lanes, zero); /* two 64-bit halves, each at most 8 * 255 */
        lines += _mm_cvtsi128_si32(sums) + _mm_extract_epi16(sums, 4);
    }
    top = (unsigned)_mm_movemask_epi8(any);
#endif
    for (; j < end; j++) {
        lines += data[j] == '\n';
        top |= data[j] & 0x80;
    }
    *high = top;
    return lines;
}

static PyObject *
count_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "count_lines(buf, start, end)");
        return NULL;
    }
    Py_buffer view;
    Py_ssize_t start, end;
    if (window_get(args, &view, &start, &end) < 0)
        return NULL;
    Py_ssize_t lines = 0;
    unsigned high = 0;
    if (start < end) {
        Py_BEGIN_ALLOW_THREADS
        lines = count(view.buf, start, end, &high);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nO)", lines, high ? Py_False : Py_True);
}

static PyMethodDef methods[] = {
    {"count_lines", (PyCFunction)(void (*)(void))count_lines, METH_FASTCALL,
     "count_lines(buf, start, end): (newlines in buf[start:end], whether every byte there is ASCII)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_line_count", "The newlines of a read and whether it is ASCII (see large_reads.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__line_count(void)
{
    return PyModule_Create(&module_def);
}
