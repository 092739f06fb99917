/* find_phrases: where the send-error phrases lie in a read, in C, without the GIL.
 *
 * The same positions as phrase_scan.find_with_bytes, the reference, in one pass
 * instead of one per phrase: every phrase holds "send" or "Send", so the scan
 * looks for that anchor only (16 bytes at a time with SSE2, case folded by one
 * OR) and compares each phrase around an anchor it finds. Hyperscan with the
 * seven phrases scans at a third of this speed, and its import costs more than
 * a whole small file. tests/test_native_phrase_scan.py compares the two.
 */
#include "_window.h"
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_PHRASES 32

typedef struct {
    const char *text;
    Py_ssize_t size;
    Py_ssize_t anchor; /* where "send" or "Send" starts in text */
} Phrase;

typedef struct {
    Py_ssize_t *at;
    Py_ssize_t count, room;
    int failed; /* out of memory */
} Hits;

static void
add_hit(Hits *hits, Py_ssize_t position)
{
    if (hits->count == hits->room) {
        Py_ssize_t room = hits->room ? 2 * hits->room : 1024;
        Py_ssize_t *at = PyMem_RawRealloc(hits->at, sizeof(Py_ssize_t) * (size_t)room);
        if (at == NULL) {
            hits->failed = 1;
            return;
        }
        hits->at = at;
        hits->room = room;
    }
    hits->at[hits->count++] = position;
}

/* data[j:j+4] is "send" or "Send": each phrase whose anchor sits at j, whole inside [start, end). */
static void
check_anchor(const char *data, Py_ssize_t j, Py_ssize_t start, Py_ssize_t end, const Phrase *phrases,
             Py_ssize_t count, Hits *hits)
{
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t at = j - phrases[k].anchor;
        if (at >= start && at + phrases[k].size <= end && data[j] == phrases[k].text[phrases[k].anchor]
            && memcmp(data + at, phrases[k].text, (size_t)phrases[k].size) == 0)
            add_hit(hits, at);
    }
}

static int
is_anchor(const char *data, Py_ssize_t j)
{
    return (data[j] == 's' || data[j] == 'S') && data[j + 1] == 'e' && data[j + 2] == 'n' && data[j + 3] == 'd';
}

static void
scan(const char *data, Py_ssize_t start, Py_ssize_t end, const Phrase *phrases, Py_ssize_t count, Hits *hits)
{
    Py_ssize_t j = start;
#if defined(__SSE2__)
    const __m128i fold = _mm_set1_epi8(0x20), first = _mm_set1_epi8('s'), last = _mm_set1_epi8('d');
    for (; j + 16 + 3 <= end; j += 16) {
        __m128i heads = _mm_or_si128(_mm_loadu_si128((const __m128i *)(data + j)), fold); /* 'S' | 0x20 == 's' */
        __m128i tails = _mm_loadu_si128((const __m128i *)(data + j + 3));
        unsigned mask = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(heads, first), _mm_cmpeq_epi8(tails, last)));
        while (mask) {
            Py_ssize_t i = j + __builtin_ctz(mask);
            if (is_anchor(data, i))
                check_anchor(data, i, start, end, phrases, count, hits);
            mask &= mask - 1;
        }
    }
#endif
    for (; j + 4 <= end; j++)
        if (is_anchor(data, j))
            check_anchor(data, j, start, end, phrases, count, hits);
}

/* The phrases of ``items`` (a tuple, which keeps them alive), each with its anchor; -1 and an
 * exception when one is not bytes or holds no anchor. */
static Py_ssize_t
read_phrases(PyObject *items, Phrase *phrases)
{
    Py_ssize_t count = PyTuple_GET_SIZE(items);
    if (count > MAX_PHRASES) {
        PyErr_Format(PyExc_ValueError, "at most %d phrases, not %zd", MAX_PHRASES, count);
        return -1;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *item = PyTuple_GET_ITEM(items, k);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "phrases must be bytes");
            return -1;
        }
        const char *text = PyBytes_AS_STRING(item);
        Py_ssize_t size = PyBytes_GET_SIZE(item), anchor = -1;
        for (Py_ssize_t i = 0; i + 4 <= size && anchor < 0; i++)
            if (is_anchor(text, i))
                anchor = i;
        if (anchor < 0) {
            PyErr_Format(PyExc_ValueError, "phrase %R holds neither b'send' nor b'Send': find it with find_with_bytes",
                         item);
            return -1;
        }
        phrases[k] = (Phrase){text, size, anchor};
    }
    return count;
}

static PyObject *
find_phrases(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "find_phrases(buf, start, end, phrases)");
        return NULL;
    }
    PyObject *items = PySequence_Tuple(args[3]); /* a list could change while the GIL is released */
    if (items == NULL)
        return NULL;
    Phrase phrases[MAX_PHRASES];
    Py_ssize_t count = read_phrases(items, phrases), start, end;
    Py_buffer view;
    if (count < 0 || window_get(args, &view, &start, &end) < 0) {
        Py_DECREF(items);
        return NULL;
    }
    Hits hits = {NULL, 0, 0, 0};
    if (start < end) {
        Py_BEGIN_ALLOW_THREADS
        scan(view.buf, start, end, phrases, count, &hits);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    Py_DECREF(items);
    PyObject *found = NULL;
    if (hits.failed) {
        PyErr_NoMemory();
    } else if ((found = PyList_New(hits.count)) != NULL) {
        for (Py_ssize_t k = 0; k < hits.count; k++) {
            PyObject *position = PyLong_FromSsize_t(hits.at[k]);
            if (position == NULL) {
                Py_CLEAR(found);
                break;
            }
            PyList_SET_ITEM(found, k, position);
        }
    }
    PyMem_RawFree(hits.at);
    return found;
}

static PyMethodDef methods[] = {
    {"find_phrases", (PyCFunction)(void (*)(void))find_phrases, METH_FASTCALL,
     "find_phrases(buf, start, end, phrases): where each phrase occurs whole in buf[start:end]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_phrase_scan", "Where the send-error phrases lie in a read (see phrase_scan.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__phrase_scan(void)
{
    return PyModule_Create(&module_def);
}
