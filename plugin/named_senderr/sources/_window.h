/* The window buf[start:end) a scan of a read is asked for, shared by the C scans of sources/.
 *
 * The bounds are read as bytes.find and bytes.count read theirs (from the end
 * when negative, then clamped), and the buffer stays held until released: it
 * cannot be resized while a scan runs without the GIL.
 */
#ifndef NAMED_SENDERR_WINDOW_H
#define NAMED_SENDERR_WINDOW_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static Py_ssize_t
window_bound(Py_ssize_t i, Py_ssize_t size)
{
    if (i < 0)
        i += size;
    return i < 0 ? 0 : i > size ? size : i;
}

/* buf, start and end from args[0..2] into *view, *start and *end; -1 with an exception set on failure.
 * On success the caller releases *view (PyBuffer_Release). */
static int
window_get(PyObject *const *args, Py_buffer *view, Py_ssize_t *start, Py_ssize_t *end)
{
    Py_ssize_t low = PyLong_AsSsize_t(args[1]), high = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred() || PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0)
        return -1;
    *start = window_bound(low, view->len);
    *end = window_bound(high, view->len);
    return 0;
}

#endif
