/* event_id_bytes in C: the same 43 base64url characters as sinks/ids.py's reference.
 *
 * Every document a store gets carries one, so its Python cost (formatting the
 * hashed bytes, base64, translate) was a tenth of shipping's CPU. The hash
 * stays hashlib's (OpenSSL uses the CPU's SHA instructions: a hand-written one
 * measured slower); the source key stays the reference's cached function. Any value the reference would treat in another way (an offset that
 * is not a plain int, text that is not strict UTF-8) is handed to the
 * reference itself. tests/test_native_ids.py compares the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *reference;  /* ids.python_event_id_bytes */
static PyObject *source_key; /* ids._source_key */
static PyObject *sha256;     /* hashlib.sha256: OpenSSL's, with the CPU's SHA instructions */
static PyObject *name_offset, *name_timestamp, *name_host, *name_file, *name_original, *name_digest;

static const char URLSAFE[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The reference's answer for this event: for every case the fast path does not take. */
static PyObject *
by_reference(PyObject *event, PyObject *cwd)
{
    PyObject *args[] = {event, cwd};
    return PyObject_Vectorcall(reference, args, 2, NULL);
}

/* 32 digest bytes as the reference's b2a_base64(...)[:43].translate(+/ -> -_). */
static PyObject *
urlsafe_43(const unsigned char *digest)
{
    char out[44];
    int o = 0;
    for (int i = 0; i < 30; i += 3) {
        unsigned v = (unsigned)digest[i] << 16 | (unsigned)digest[i + 1] << 8 | digest[i + 2];
        out[o++] = URLSAFE[v >> 18 & 63];
        out[o++] = URLSAFE[v >> 12 & 63];
        out[o++] = URLSAFE[v >> 6 & 63];
        out[o++] = URLSAFE[v & 63];
    }
    unsigned v = (unsigned)digest[30] << 16 | (unsigned)digest[31] << 8;
    out[o++] = URLSAFE[v >> 18 & 63];
    out[o++] = URLSAFE[v >> 12 & 63];
    out[o++] = URLSAFE[v >> 6 & 63];
    return PyBytes_FromStringAndSize(out, o);
}

static PyObject *
event_id_bytes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "event_id_bytes(event, cwd)");
        return NULL;
    }
    if (reference == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ids.configure() was not called");
        return NULL;
    }
    PyObject *event = args[0], *cwd = args[1];
    PyObject *result = NULL, *key = NULL, *hashed = NULL, *hasher = NULL, *digest = NULL;
    PyObject *offset = NULL, *timestamp = NULL, *host = NULL, *file = NULL, *original = NULL;
    char number[24];
    const char *position = "";
    Py_ssize_t position_size = 0;

    offset = PyObject_GetAttr(event, name_offset);
    if (offset == NULL)
        goto done;
    if (PyLong_CheckExact(offset)) {
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(offset, &overflow);
        if (overflow || (value == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            goto reference_path;
        }
        position_size = snprintf(number, sizeof number, "%lld", value);
        position = number;
    } else if (offset == Py_None) {
        timestamp = PyObject_GetAttr(event, name_timestamp);
        if (timestamp == NULL)
            goto done;
        if (PyUnicode_CheckExact(timestamp)) {
            position = PyUnicode_AsUTF8AndSize(timestamp, &position_size);
            if (position == NULL) {
                PyErr_Clear();
                goto reference_path;
            }
        } else if (timestamp != Py_None) {
            goto reference_path;
        }
    } else {
        goto reference_path;
    }
    original = PyObject_GetAttr(event, name_original);
    if (original == NULL)
        goto done;
    if (!PyUnicode_CheckExact(original))
        goto reference_path;
    Py_ssize_t text_size;
    const char *text = PyUnicode_AsUTF8AndSize(original, &text_size);
    if (text == NULL) { /* a lone surrogate: the reference encodes it with surrogateescape */
        PyErr_Clear();
        goto reference_path;
    }
    host = PyObject_GetAttr(event, name_host);
    file = host ? PyObject_GetAttr(event, name_file) : NULL;
    if (file == NULL)
        goto done;
    PyObject *key_args[] = {host, file, cwd};
    key = PyObject_Vectorcall(source_key, key_args, 3, NULL);
    if (key == NULL) {
        PyErr_Clear();
        goto reference_path;
    }
    if (!PyBytes_CheckExact(key))
        goto reference_path;
    Py_ssize_t key_size = PyBytes_GET_SIZE(key);
    hashed = PyBytes_FromStringAndSize(NULL, key_size + position_size + 1 + text_size);
    if (hashed == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(hashed);
    memcpy(out, PyBytes_AS_STRING(key), (size_t)key_size);
    memcpy(out + key_size, position, (size_t)position_size);
    out[key_size + position_size] = '\0';
    memcpy(out + key_size + position_size + 1, text, (size_t)text_size);
    hasher = PyObject_CallOneArg(sha256, hashed);
    if (hasher == NULL)
        goto done;
    digest = PyObject_CallMethodNoArgs(hasher, name_digest);
    if (digest == NULL)
        goto done;
    if (!PyBytes_CheckExact(digest) || PyBytes_GET_SIZE(digest) != 32) {
        PyErr_SetString(PyExc_SystemError, "sha256 gave no 32-byte digest");
        goto done;
    }
    result = urlsafe_43((const unsigned char *)PyBytes_AS_STRING(digest));
    goto done;
reference_path:
    result = by_reference(event, cwd);
done:
    Py_XDECREF(offset);
    Py_XDECREF(timestamp);
    Py_XDECREF(host);
    Py_XDECREF(file);
    Py_XDECREF(original);
    Py_XDECREF(key);
    Py_XDECREF(hashed);
    Py_XDECREF(hasher);
    Py_XDECREF(digest);
    return result;
}

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "configure(reference, source_key, sha256)");
        return NULL;
    }
    Py_XSETREF(reference, Py_NewRef(args[0]));
    Py_XSETREF(source_key, Py_NewRef(args[1]));
    Py_XSETREF(sha256, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"event_id_bytes", (PyCFunction)(void (*)(void))event_id_bytes, METH_FASTCALL,
     "event_id_bytes(event, cwd): the event's document id, as sinks/ids.py's reference gives it."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(reference, source_key, sha256): the Python parts the fast path uses or hands over to."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_ids", "Deterministic document ids (see sinks/ids.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__ids(void)
{
    name_offset = PyUnicode_InternFromString("offset");
    name_timestamp = PyUnicode_InternFromString("timestamp");
    name_host = PyUnicode_InternFromString("host");
    name_file = PyUnicode_InternFromString("file");
    name_original = PyUnicode_InternFromString("original");
    name_digest = PyUnicode_InternFromString("digest");
    if (!name_offset || !name_timestamp || !name_host || !name_file || !name_original || !name_digest)
        return NULL;
    return PyModule_Create(&module_def);
}
