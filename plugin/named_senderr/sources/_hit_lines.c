/* hit_lines: the whole lines of a read that hold a phrase hit, in C.
 *
 * The same list as large_reads.python_hit_lines, the reference: for a log of
 * nothing but send errors the per-hit rfind/find/slice in Python cost more
 * than reading the file. tests/test_large_reads.py compares the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

static int
compare(const void *a, const void *b)
{
    Py_ssize_t x = *(const Py_ssize_t *)a, y = *(const Py_ssize_t *)b;
    return (x > y) - (x < y);
}

/* The last newline in data[low:high), or -1 (bytes.rfind). */
static Py_ssize_t
last_newline(const char *data, Py_ssize_t low, Py_ssize_t high)
{
    for (Py_ssize_t i = high - 1; i >= low; i--) /* memrchr is not everywhere; lines are short */
        if (data[i] == '\n')
            return i;
    return -1;
}

/* The first newline in data[low:high), or -1 (bytes.find). */
static Py_ssize_t
next_newline(const char *data, Py_ssize_t low, Py_ssize_t high)
{
    if (high <= low)
        return -1;
    const char *found = memchr(data + low, '\n', (size_t)(high - low));
    return found ? found - data : -1;
}

/* Hits in ascending order, each checked to lie inside the buffer. */
static Py_ssize_t *
sorted_hits(PyObject *hits, Py_ssize_t size, Py_ssize_t *count)
{
    PyObject *sequence = PySequence_Fast(hits, "hits must be a sequence of positions");
    if (sequence == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    Py_ssize_t *positions = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    if (positions == NULL) {
        Py_DECREF(sequence);
        PyErr_NoMemory();
        return NULL;
    }
    int ordered = 1;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t i = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sequence, k));
        if (i == -1 && PyErr_Occurred())
            goto fail;
        if (i < 0 || i > size) {
            PyErr_Format(PyExc_ValueError, "hit %zd lies outside the buffer of %zd bytes", i, size);
            goto fail;
        }
        positions[k] = i;
        ordered &= k == 0 || positions[k - 1] <= i;
    }
    Py_DECREF(sequence);
    if (!ordered)
        qsort(positions, (size_t)n, sizeof(Py_ssize_t), compare);
    *count = n;
    return positions;
fail:
    Py_DECREF(sequence);
    PyMem_Free(positions);
    return NULL;
}

static PyObject *
hit_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "hit_lines(buf, start, end, hits, base, limit)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    Py_ssize_t base = PyLong_AsSsize_t(args[4]), limit = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *data = view.buf;
    Py_ssize_t size = view.len, count = 0;
    PyObject *lines = NULL;
    Py_ssize_t *hits = NULL;
    if (start < 0 || end > size || start > end) {
        PyErr_Format(PyExc_ValueError, "window %zd:%zd does not fit a buffer of %zd bytes", start, end, size);
        goto done;
    }
    hits = sorted_hits(args[3], size, &count);
    if (hits == NULL)
        goto done;
    lines = PyList_New(0);
    if (lines == NULL)
        goto done;
    Py_ssize_t last = -1;
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t i = hits[k];
        Py_ssize_t low = i - limit > start ? i - limit : start;
        Py_ssize_t line_start = last_newline(data, low, i) + 1;
        if (line_start == 0) {
            if (low > start)
                continue; /* no newline within reach: a line over the limit */
            line_start = start;
        }
        if (line_start == last)
            continue;
        Py_ssize_t line_end = next_newline(data, i, end);
        if (line_end - line_start > limit)
            continue;
        /* As the reference's slice: a missing newline (-1) reads up to the buffer's last byte. */
        Py_ssize_t stop = line_end < 0 ? size + line_end : line_end;
        PyObject *item = Py_BuildValue("(ny#O)", base + line_start, data + line_start,
                                       stop > line_start ? stop - line_start : 0, Py_False);
        if (item == NULL || PyList_Append(lines, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(lines);
            goto done;
        }
        Py_DECREF(item);
        last = line_start;
    }
done:
    PyMem_Free(hits);
    PyBuffer_Release(&view);
    return lines;
}

static PyMethodDef methods[] = {
    {"hit_lines", (PyCFunction)(void (*)(void))hit_lines, METH_FASTCALL,
     "hit_lines(buf, start, end, hits, base, limit): the whole lines of buf[start:end] holding a hit."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_hit_lines", "The lines of a read that hold a phrase hit (see large_reads.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__hit_lines(void)
{
    return PyModule_Create(&module_def);
}
