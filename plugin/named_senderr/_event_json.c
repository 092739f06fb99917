/* named_senderr._event_json: event.ecs_json_reference and event.to_flat_reference in C.
 *
 * ecs_json(event, ingest_time, newline=False) writes the ECS document of one
 * Event the way orjson.dumps(to_ecs(...)) would.  It reads the Event's slots
 * straight from their member descriptors' offsets (bind() records them) and
 * encodes strings and integers itself.  Anything off the happy path (a rollup,
 * a value that is not exactly str, int or None, an int beyond 64 bits, a lone
 * surrogate, an unset slot, a subclass of Event, an error from the shared part)
 * hands the whole call to the Python reference, which encodes or raises exactly
 * as it always did.
 *
 * to_flat(event) builds the flat record as a copy of a template dict that holds
 * every key in the reference's order (None for each value), then sets the values
 * that are not None: the same keys in the same order, the slots' own objects as
 * values, the hint from reasons.hint (memoized by kind and reason).  A subclass
 * of Event, an unset slot, a kind or reason that is not exactly str, or an error
 * from hint hands the call to the reference in the same way.
 *
 * Not safe without the GIL: the scratch buffer is shared, which holds only
 * because no Python code runs while it is written.  Single-phase init, so a
 * free-threaded build keeps the GIL on for this module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX before 3.12 */
#include <stdint.h>
#include <string.h>

#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif

/* The Event fields this encoder reads, in the order of FIELD_NAMES. */
enum field {
    F_MESSAGE_KIND, F_REASON, F_REASON_TEXT, F_MESSAGE, F_ORIGINAL, F_TIMESTAMP, F_TIMESTAMP_VALID,
    F_CLIENT_IP, F_CLIENT_PORT, F_SCOPE, F_CLIENT_PTR, F_QNAME, F_VIEW, F_SIGNER, F_NETMGR_PTR, F_ZONE,
    F_ZONE_CLASS, F_REPEAT_COUNT, F_HOST, F_PROGRAM, F_PID, F_CATEGORY, F_SEVERITY, F_PRIORITY,
    F_SYSLOG_SEVERITY, F_CONTAINER, F_FILE, F_OFFSET, F_ROLLUP_WINDOW, F_INGESTED, F_DESTINATION_IP,
    F_DESTINATION_PORT, F_COUNT,
    /* Read by to_flat only (a rollup's window): ecs_json's loop over F_COUNT leaves them alone. */
    F_FIRST_SEEN = F_COUNT, F_LAST_SEEN, F_ALL
};

static const char *const FIELD_NAMES[F_ALL] = {
    "message_kind", "reason", "reason_text", "message", "original", "timestamp", "timestamp_valid",
    "client_ip", "client_port", "scope", "client_ptr", "qname", "view", "signer", "netmgr_ptr", "zone",
    "zone_class", "repeat_count", "host", "program", "pid", "category", "severity", "priority",
    "syslog_severity", "container", "file", "offset", "rollup_window", "ingested", "destination_ip",
    "destination_port", "first_seen", "last_seen",
};

/* The flat record's keys in the reference's order and the field each holds; F_HINT: reasons.hint's text. */
#define F_HINT F_ALL
static const struct {
    const char *key;
    int field;
} FLAT_KEYS[] = {
    {"timestamp", F_TIMESTAMP}, {"reason", F_REASON}, {"reason_text", F_REASON_TEXT}, {"hint", F_HINT},
    {"client_ip", F_CLIENT_IP}, {"client_port", F_CLIENT_PORT}, {"scope", F_SCOPE}, {"qname", F_QNAME},
    {"view", F_VIEW}, {"signer", F_SIGNER}, {"client_ptr", F_CLIENT_PTR}, {"message_kind", F_MESSAGE_KIND},
    {"repeat_count", F_REPEAT_COUNT}, {"host", F_HOST}, {"program", F_PROGRAM}, {"pid", F_PID},
    {"category", F_CATEGORY}, {"severity", F_SEVERITY}, {"file", F_FILE}, {"offset", F_OFFSET},
    {"message", F_MESSAGE}, {"zone", F_ZONE}, {"zone_class", F_ZONE_CLASS}, {"destination_ip", F_DESTINATION_IP},
    {"destination_port", F_DESTINATION_PORT},
    /* A rollup's three, appended when rollup_window is not None. */
    {"count", F_REPEAT_COUNT}, {"first_seen", F_FIRST_SEEN}, {"last_seen", F_LAST_SEEN},
};
#define N_FLAT_KEYS (sizeof(FLAT_KEYS) / sizeof(FLAT_KEYS[0]))
#define N_PLAIN_KEYS (N_FLAT_KEYS - 3)

/* The bind section's optional keys, in the reference's order (_BIND_KEYS). */
#define KEY(lit) lit, sizeof(lit) - 1
static const struct {
    enum field field;
    const char *key;
    size_t size;
} BIND_KEYS[] = {
    {F_VIEW, KEY(",\"view\":")}, {F_SIGNER, KEY(",\"signer\":")}, {F_CLIENT_PTR, KEY(",\"client_ptr\":")},
    {F_NETMGR_PTR, KEY(",\"netmgr_ptr\":")}, {F_SCOPE, KEY(",\"scope\":")}, {F_ZONE, KEY(",\"zone\":")},
    {F_ZONE_CLASS, KEY(",\"zone_class\":")},
};

/* The log section's keys, in the reference's order; nested ones close an object of their own. */
static const struct {
    const char *key;
    size_t size;
    int nested;
} LOG_KEYS[] = {
    {KEY("\"level\":"), 0}, {KEY("\"logger\":"), 0}, {KEY("\"file\":{\"path\":"), 1}, {KEY("\"offset\":"), 0},
    {KEY("\"syslog\":{\"priority\":"), 1},
};

/* Past this size the scratch buffer is given back after the call: one huge event must not pin memory. */
#define KEEP_BUFFER 65536

/* Shared parts by (kind, reason, reason_text): a few dozen live at once in a log. */
#define MEMO_SIZE 256
typedef struct {
    PyObject *kind, *reason, *text, *part; /* strong references; part NULL: empty */
} Memo;

/* Hints by (kind, reason): a handful of pairs in a log. */
#define HINT_MEMO_SIZE 64
typedef struct {
    PyObject *kind, *reason, *hint; /* strong references; hint NULL: empty */
} HintMemo;

typedef struct {
    PyTypeObject *event_type; /* exactly this type takes the fast path; subclasses go to the reference */
    PyObject *shared_part;    /* event._shared_part: the bytes after event.original, for shared_part() */
    PyObject *reference;      /* event.ecs_json_reference */
    PyObject *hint;           /* reasons.hint(reason, message_kind) */
    PyObject *flat_reference; /* event.to_flat_reference */
    PyObject *flat_keys[N_FLAT_KEYS]; /* FLAT_KEYS' names, interned */
    PyObject *flat_template;          /* every plain key of the flat record in order, each None */
    Py_ssize_t offsets[F_ALL];
    Memo memo[MEMO_SIZE];
    HintMemo hints[HINT_MEMO_SIZE];
    char *buf;
    size_t cap;
} State;

typedef struct {
    char *p;   /* next byte to write */
    char *end; /* end of the reserved room */
    State *st;
} Writer;

static State *state_of(PyObject *module) { return (State *)PyModule_GetState(module); }

/* Room for n more bytes; -1 (no exception kept) when memory runs out. */
static inline int reserve(Writer *w, size_t n)
{
    if ((size_t)(w->end - w->p) >= n)
        return 0;
    State *st = w->st;
    size_t used = (size_t)(w->p - st->buf);
    size_t cap = st->cap ? st->cap : 4096;
    while (cap - used < n) {
        if (cap > PY_SSIZE_T_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *grown = PyMem_Realloc(st->buf, cap);
    if (grown == NULL)
        return -1;
    st->buf = grown;
    st->cap = cap;
    w->p = grown + used;
    w->end = grown + cap;
    return 0;
}

static inline int put(Writer *w, const char *s, size_t n)
{
    if (reserve(w, n) < 0)
        return -1;
    memcpy(w->p, s, n);
    w->p += n;
    return 0;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

/* 1 for the ASCII bytes orjson escapes: control characters, '"' and '\\' (0x7f stays raw). */
static const unsigned char NEEDS_ESCAPE[128] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
};

/* Nonzero when one of the eight bytes of x is not copied as it is: below 0x20, '"', '\\' or above 0x7f.
 * The borrow tricks find whether such a byte exists exactly (not always which one): never a false "clean". */
static inline uint64_t special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | x) & highs;
}

/* The last m < 8 bytes of a string as one word to check, padded with 'a' (copied as it is): whole-word
 * loads that overlap, never bytes stored one by one and read back as a word (a store-forwarding stall). */
static inline uint64_t tail_word(const Py_UCS1 *c, size_t m)
{
    const uint64_t pad = 0x6161616161616161ULL;
    if (m >= 4) {
        uint32_t a, b;
        memcpy(&a, c, 4);
        memcpy(&b, c + m - 4, 4);
        return a | (uint64_t)b << 32;
    }
    if (m >= 2) {
        uint16_t a, b;
        memcpy(&a, c, 2);
        memcpy(&b, c + m - 2, 2);
        return pad << 32 | a | (uint64_t)b << 16;
    }
    return pad << 8 | c[0];
}

/* m <= 8 bytes copied with the same overlapping moves. */
static inline void copy_chunk(char *p, const Py_UCS1 *c, size_t m)
{
    if (m == 8) {
        memcpy(p, c, 8);
    } else if (m >= 4) {
        memcpy(p, c, 4);
        memcpy(p + m - 4, c + m - 4, 4);
    } else if (m >= 2) {
        memcpy(p, c, 2);
        memcpy(p + m - 2, c + m - 2, 2);
    } else {
        *p = (char)*c;
    }
}

static char *put_escape(char *p, Py_UCS4 c)
{
    static const char HEX[] = "0123456789abcdef"; /* orjson writes \u001f, lower case */
    *p++ = '\\';
    switch (c) {
    case '"': *p++ = '"'; break;
    case '\\': *p++ = '\\'; break;
    case '\b': *p++ = 'b'; break;
    case '\t': *p++ = 't'; break;
    case '\n': *p++ = 'n'; break;
    case '\f': *p++ = 'f'; break;
    case '\r': *p++ = 'r'; break;
    default:
        memcpy(p, "u00", 3);
        p[3] = HEX[c >> 4];
        p[4] = HEX[c & 0xf];
        p += 5;
    }
    return p;
}

/* A str made by the legacy Py_UNICODE API has no canonical form until readied (3.12 has none left). */
static int ready(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(s);
#else
    (void)s;
    return 0;
#endif
}

/* A str as a JSON string in UTF-8; -1 on a lone surrogate (orjson refuses it: the reference raises). */
static int put_str(Writer *w, PyObject *s)
{
    if (ready(s) < 0)
        return -1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    /* At most 6 bytes a character (\u00XX), plus the quotes. */
    if ((size_t)n > (PY_SSIZE_T_MAX - 2) / 6 || reserve(w, (size_t)n * 6 + 2) < 0)
        return -1;
    char *p = w->p;
    *p++ = '"';
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *c = data, *stop = c + n;
        while (c < stop) {
            /* Eight bytes at a time while none needs more than a copy, else those bytes one by one. */
            size_t m = stop - c < 8 ? (size_t)(stop - c) : 8;
            const Py_UCS1 *chunk_end = c + m;
            uint64_t x;
            if (m == 8)
                memcpy(&x, c, 8);
            else
                x = tail_word(c, m);
            if (!special(x)) {
                copy_chunk(p, c, m);
                p += m;
                c += m;
                continue;
            }
            for (; c < chunk_end; c++) {
                if (*c >= 0x80) { /* Latin-1 above ASCII: two bytes of UTF-8 */
                    *p++ = (char)(0xc0 | (*c >> 6));
                    *p++ = (char)(0x80 | (*c & 0x3f));
                } else if (NEEDS_ESCAPE[*c]) {
                    p = put_escape(p, *c);
                } else {
                    *p++ = (char)*c;
                }
            }
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 0x80) {
                if (NEEDS_ESCAPE[c])
                    p = put_escape(p, c);
                else
                    *p++ = (char)c;
            } else if (c < 0x800) {
                *p++ = (char)(0xc0 | (c >> 6));
                *p++ = (char)(0x80 | (c & 0x3f));
            } else if (c < 0x10000) {
                if (c >= 0xd800 && c <= 0xdfff)
                    return -1;
                *p++ = (char)(0xe0 | (c >> 12));
                *p++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *p++ = (char)(0x80 | (c & 0x3f));
            } else {
                *p++ = (char)(0xf0 | (c >> 18));
                *p++ = (char)(0x80 | ((c >> 12) & 0x3f));
                *p++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *p++ = (char)(0x80 | (c & 0x3f));
            }
        }
    }
    *p++ = '"';
    w->p = p;
    return 0;
}

/* An int in decimal; -1 beyond 64 signed bits (the reference then encodes or refuses it as orjson does). */
static int put_int(Writer *w, PyObject *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred()))
        return -1;
    char digits[24], *d = digits + sizeof(digits);
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        *--d = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0)
        *--d = '-';
    return put(w, d, (size_t)(digits + sizeof(digits) - d));
}

/* What orjson.dumps(v) gives for None, an exact str or an exact int; -1 for anything else. */
static int put_value(Writer *w, PyObject *v)
{
    if (v == Py_None)
        return PUT_LIT(w, "null");
    if (PyUnicode_CheckExact(v))
        return put_str(w, v);
    if (PyLong_CheckExact(v))
        return put_int(w, v);
    return -1;
}

/* Python's truth of None, an exact str or an exact int (no code of the value's own runs); -1 otherwise. */
static int truth(PyObject *v)
{
    if (v == Py_None)
        return 0;
    if (PyUnicode_CheckExact(v))
        return ready(v) < 0 ? -1 : PyUnicode_GET_LENGTH(v) != 0;
    if (PyLong_CheckExact(v))
        return PyObject_IsTrue(v);
    return -1;
}

/* Two exact, ready strs with the same characters (the canonical form makes equal strs equal in memory). */
static int same(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return a == b
           || (n == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b)
               && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0);
}

/* The bytes every event of a (kind, reason, reason_text) shares, new reference; NULL: take the reference path.
 * The memo spares the key's tuple and the dict of _shared_part, which fills it on a miss and raises for an
 * unknown kind or reason (never memoized: the reference raises it again). */
static PyObject *shared_part(State *st, PyObject *kind, PyObject *reason, PyObject *text)
{
    if (!PyUnicode_CheckExact(kind) || !PyUnicode_CheckExact(reason) || !PyUnicode_CheckExact(text)
        || ready(kind) < 0 || ready(reason) < 0 || ready(text) < 0)
        return NULL;
    Py_hash_t hashes[] = {PyObject_Hash(kind), PyObject_Hash(reason), PyObject_Hash(text)};
    if (hashes[0] == -1 || hashes[1] == -1 || hashes[2] == -1)
        return NULL;
    size_t slot = ((size_t)hashes[0] ^ (size_t)hashes[1] * 31 ^ (size_t)hashes[2] * 1000003) % MEMO_SIZE;
    Memo *m = &st->memo[slot];
    if (m->part != NULL && same(m->kind, kind) && same(m->reason, reason) && same(m->text, text))
        return Py_NewRef(m->part);
    PyObject *args[] = {kind, reason, text};
    PyObject *part = PyObject_Vectorcall(st->shared_part, args, 3, NULL);
    if (part == NULL || !PyBytes_CheckExact(part)) {
        Py_XDECREF(part);
        return NULL;
    }
    /* What these replace are strs and bytes: freeing them runs no code. */
    m = &st->memo[slot];
    Py_XSETREF(m->kind, Py_NewRef(kind));
    Py_XSETREF(m->reason, Py_NewRef(reason));
    Py_XSETREF(m->text, Py_NewRef(text));
    Py_XSETREF(m->part, Py_NewRef(part));
    return part;
}

/* The document after the shared part, from the fields read into f; -1: take the reference path. */
static int put_rest(Writer *w, PyObject *const *f)
{
    if (put_value(w, f[F_REPEAT_COUNT]) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(BIND_KEYS) / sizeof(BIND_KEYS[0]); i++) {
        PyObject *v = f[BIND_KEYS[i].field];
        if (v != Py_None && (put(w, BIND_KEYS[i].key, BIND_KEYS[i].size) < 0 || put_value(w, v) < 0))
            return -1;
    }
    PyObject *valid = f[F_TIMESTAMP_VALID];
    if (valid != Py_True && valid != Py_False)
        return -1;
    if ((valid == Py_False || f[F_TIMESTAMP] == Py_None) && PUT_LIT(w, ",\"timestamp_valid\":false") < 0)
        return -1;
    if (PUT_LIT(w, "}") < 0)
        return -1;
    PyObject *client_ip = f[F_CLIENT_IP], *destination_ip = f[F_DESTINATION_IP];
    if (client_ip != Py_None
        && (PUT_LIT(w, ",\"client\":{\"ip\":") < 0 || put_value(w, client_ip) < 0 || PUT_LIT(w, ",\"port\":") < 0
            || put_value(w, f[F_CLIENT_PORT]) < 0 || PUT_LIT(w, ",\"address\":") < 0 || put_value(w, client_ip) < 0
            || PUT_LIT(w, "}") < 0))
        return -1;
    if (destination_ip != Py_None
        && (PUT_LIT(w, ",\"destination\":{\"ip\":") < 0 || put_value(w, destination_ip) < 0
            || PUT_LIT(w, ",\"port\":") < 0 || put_value(w, f[F_DESTINATION_PORT]) < 0 || PUT_LIT(w, "}") < 0))
        return -1;
    if (client_ip != Py_None || destination_ip != Py_None) {
        if (PUT_LIT(w, ",\"related\":{\"ip\":[") < 0)
            return -1;
        if (client_ip != Py_None && put_value(w, client_ip) < 0)
            return -1;
        if (client_ip != Py_None && destination_ip != Py_None && PUT_LIT(w, ",") < 0)
            return -1;
        if (destination_ip != Py_None && put_value(w, destination_ip) < 0)
            return -1;
        if (PUT_LIT(w, "]}") < 0)
            return -1;
    }
    if (f[F_QNAME] != Py_None
        && (PUT_LIT(w, ",\"dns\":{\"question\":{\"name\":") < 0 || put_value(w, f[F_QNAME]) < 0
            || PUT_LIT(w, "}}") < 0))
        return -1;
    if (f[F_HOST] != Py_None
        && (PUT_LIT(w, ",\"host\":{\"name\":") < 0 || put_value(w, f[F_HOST]) < 0 || PUT_LIT(w, "}") < 0))
        return -1;
    if ((f[F_PROGRAM] != Py_None || f[F_PID] != Py_None)
        && (PUT_LIT(w, ",\"process\":{\"name\":") < 0 || put_value(w, f[F_PROGRAM]) < 0
            || PUT_LIT(w, ",\"pid\":") < 0 || put_value(w, f[F_PID]) < 0 || PUT_LIT(w, "}") < 0))
        return -1;
    /* log: level = severity or syslog_severity; the keys present, each after the first behind a comma. */
    int severity = truth(f[F_SEVERITY]);
    if (severity < 0)
        return -1;
    PyObject *level = severity ? f[F_SEVERITY] : f[F_SYSLOG_SEVERITY];
    PyObject *log[] = {level, f[F_CATEGORY], f[F_FILE], f[F_OFFSET], f[F_PRIORITY]};
    int logged = 0;
    for (size_t i = 0; i < sizeof(log) / sizeof(log[0]); i++) {
        if (log[i] == Py_None)
            continue;
        if ((logged ? PUT_LIT(w, ",") : PUT_LIT(w, ",\"log\":{")) < 0 || put(w, LOG_KEYS[i].key, LOG_KEYS[i].size) < 0
            || put_value(w, log[i]) < 0 || (LOG_KEYS[i].nested && PUT_LIT(w, "}") < 0))
            return -1;
        logged = 1;
    }
    if (logged && PUT_LIT(w, "}") < 0)
        return -1;
    if (f[F_CONTAINER] != Py_None
        && (PUT_LIT(w, ",\"container\":{\"name\":") < 0 || put_value(w, f[F_CONTAINER]) < 0
            || PUT_LIT(w, "}") < 0))
        return -1;
    return 0;
}

/* The document from the event's slots; -1: take the reference path. */
static int put_document(Writer *w, PyObject *event, PyObject *ingest_time, PyObject *part)
{
    State *st = w->st;
    PyObject *f[F_COUNT];
    /* Borrowed: from here on no Python code runs that could change the event. */
    for (int i = 0; i < F_COUNT; i++) {
        f[i] = *(PyObject **)((char *)event + st->offsets[i]);
        if (f[i] == NULL) /* an unset slot: the reference raises AttributeError */
            return -1;
    }
    if (f[F_ROLLUP_WINDOW] != Py_None) /* a rollup's few events take the reference path, as in Python */
        return -1;
    /* @timestamp = timestamp or ingested or ingest_time */
    PyObject *stamp = f[F_TIMESTAMP];
    int true_ = truth(stamp);
    if (true_ == 0) {
        stamp = f[F_INGESTED];
        true_ = truth(stamp);
        if (true_ == 0)
            stamp = ingest_time;
    }
    if (true_ < 0)
        return -1;
    if (PUT_LIT(w, "{\"@timestamp\":") < 0 || put_value(w, stamp) < 0 || PUT_LIT(w, ",\"message\":") < 0
        || put_value(w, f[F_MESSAGE]) < 0 || PUT_LIT(w, ",\"event\":{\"original\":") < 0
        || put_value(w, f[F_ORIGINAL]) < 0 || put(w, PyBytes_AS_STRING(part), (size_t)PyBytes_GET_SIZE(part)) < 0)
        return -1;
    return put_rest(w, f);
}

/* The call handed to the Python reference (ecs_json's or to_flat's) as it was made. */
static PyObject *fall_back(PyObject *reference, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    /* Keep what must not be swallowed (KeyboardInterrupt, SystemExit); the reference raises anything else again. */
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        PyErr_Clear();
    }
    return PyObject_Vectorcall(reference, args, (size_t)nargs, kwnames);
}

static PyObject *ecs_json(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    State *st = state_of(module);
    if (st->reference == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "named_senderr._event_json: bind() was not called");
        return NULL;
    }
    PyObject *event = nargs > 0 ? args[0] : NULL, *ingest_time = nargs > 1 ? args[1] : NULL;
    PyObject *newline = nargs > 2 ? args[2] : Py_False;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 3)
        return fall_back(st->reference, args, nargs, kwnames); /* the reference says what is wrong */
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *value = args[nargs + i];
        if (nargs < 3 && PyUnicode_CompareWithASCIIString(name, "newline") == 0)
            newline = value;
        else if (nargs < 2 && PyUnicode_CompareWithASCIIString(name, "ingest_time") == 0)
            ingest_time = value;
        else if (nargs < 1 && PyUnicode_CompareWithASCIIString(name, "event") == 0)
            event = value;
        else
            return fall_back(st->reference, args, nargs, kwnames);
    }
    if (event == NULL || ingest_time == NULL || Py_TYPE(event) != st->event_type)
        return fall_back(st->reference, args, nargs, kwnames);
    /* Everything that may run Python code comes before the slots are read. */
    int end_line = PyObject_IsTrue(newline);
    if (end_line < 0)
        return fall_back(st->reference, args, nargs, kwnames);
    PyObject *kind = *(PyObject **)((char *)event + st->offsets[F_MESSAGE_KIND]);
    PyObject *reason = *(PyObject **)((char *)event + st->offsets[F_REASON]);
    PyObject *text = *(PyObject **)((char *)event + st->offsets[F_REASON_TEXT]);
    if (kind == NULL || reason == NULL || text == NULL)
        return fall_back(st->reference, args, nargs, kwnames);
    /* Held across shared_part(): on a miss it runs Python code, which may change the event. */
    Py_INCREF(kind);
    Py_INCREF(reason);
    Py_INCREF(text);
    PyObject *part = shared_part(st, kind, reason, text);
    Py_DECREF(kind);
    Py_DECREF(reason);
    Py_DECREF(text);
    if (part == NULL)
        return fall_back(st->reference, args, nargs, kwnames);
    Writer w = {st->buf, st->buf ? st->buf + st->cap : NULL, st};
    int failed = put_document(&w, event, ingest_time, part) < 0
                 || (end_line ? PUT_LIT(&w, "}\n") : PUT_LIT(&w, "}")) < 0;
    Py_DECREF(part);
    PyObject *result = failed ? NULL : PyBytes_FromStringAndSize(st->buf, w.p - st->buf);
    if (st->cap > KEEP_BUFFER) {
        PyMem_Free(st->buf);
        st->buf = NULL;
        st->cap = 0;
    }
    return result ? result : fall_back(st->reference, args, nargs, kwnames);
}

/* The hint for (kind, reason), both exact and ready strs: a new reference, or NULL with reasons.hint's error.
 * hint reads constant tables, so a text it gave once is kept; an error is never kept (the reference raises
 * it again). */
static PyObject *hint_of(State *st, PyObject *kind, PyObject *reason)
{
    Py_hash_t hashes[] = {PyObject_Hash(kind), PyObject_Hash(reason)};
    if (hashes[0] == -1 || hashes[1] == -1)
        return NULL;
    size_t slot = ((size_t)hashes[0] ^ (size_t)hashes[1] * 1000003) % HINT_MEMO_SIZE;
    HintMemo *m = &st->hints[slot];
    if (m->hint != NULL && same(m->kind, kind) && same(m->reason, reason))
        return Py_NewRef(m->hint);
    PyObject *args[] = {reason, kind};
    PyObject *hint = PyObject_Vectorcall(st->hint, args, 2, NULL);
    if (hint == NULL || !PyUnicode_CheckExact(hint))
        return hint; /* anything but a str is handed on, never kept: freeing it later could run code */
    m = &st->hints[slot];
    Py_XSETREF(m->kind, Py_NewRef(kind)); /* strs: freeing them runs no code */
    Py_XSETREF(m->reason, Py_NewRef(reason));
    Py_XSETREF(m->hint, Py_NewRef(hint));
    return hint;
}

/* The flat record filled from the event's slots, or NULL (no exception kept): take the reference path.
 * The copy is made before any slot is read: allocating it may collect garbage, and a finalizer may change
 * the event.  From the first slot read to the return, setting a str key of the copy runs no Python code. */
static PyObject *flat_record(State *st, PyObject *event, PyObject *hint)
{
    PyObject *flat = PyDict_Copy(st->flat_template);
    if (flat == NULL)
        return NULL;
    PyObject *window = *(PyObject **)((char *)event + st->offsets[F_ROLLUP_WINDOW]);
    size_t keys = window != Py_None ? N_FLAT_KEYS : N_PLAIN_KEYS; /* a rollup's three appended, in order */
    for (size_t i = 0; i < keys; i++) {
        int field = FLAT_KEYS[i].field;
        PyObject *v = field == F_HINT ? hint : *(PyObject **)((char *)event + st->offsets[field]);
        /* An unset slot: the reference raises AttributeError.  A plain key whose value is None is so already. */
        if (window == NULL || v == NULL
            || ((v != Py_None || i >= N_PLAIN_KEYS) && PyDict_SetItem(flat, st->flat_keys[i], v) < 0)) {
            Py_DECREF(flat);
            return NULL;
        }
    }
    return flat;
}

static PyObject *to_flat(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    State *st = state_of(module);
    if (st->flat_reference == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "named_senderr._event_json: bind() was not called");
        return NULL;
    }
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || Py_TYPE(args[0]) != st->event_type)
        return fall_back(st->flat_reference, args, nargs, kwnames); /* the reference says what is wrong */
    PyObject *event = args[0];
    PyObject *kind = *(PyObject **)((char *)event + st->offsets[F_MESSAGE_KIND]);
    PyObject *reason = *(PyObject **)((char *)event + st->offsets[F_REASON]);
    if (kind == NULL || reason == NULL || !PyUnicode_CheckExact(kind) || !PyUnicode_CheckExact(reason)
        || ready(kind) < 0 || ready(reason) < 0)
        return fall_back(st->flat_reference, args, nargs, kwnames);
    /* Held across hint_of(): on a miss it runs Python code, which may change the event. */
    Py_INCREF(kind);
    Py_INCREF(reason);
    PyObject *hint = hint_of(st, kind, reason);
    Py_DECREF(kind);
    Py_DECREF(reason);
    if (hint == NULL)
        return fall_back(st->flat_reference, args, nargs, kwnames);
    PyObject *flat = flat_record(st, event, hint);
    Py_DECREF(hint);
    return flat ? flat : fall_back(st->flat_reference, args, nargs, kwnames);
}

static int clear(PyObject *module);

/* The flat record's plain keys in order, each None: what to_flat copies. */
static PyObject *new_flat_template(PyObject *const *keys)
{
    PyObject *template = PyDict_New();
    for (size_t i = 0; template != NULL && i < N_PLAIN_KEYS; i++) {
        if (PyDict_SetItem(template, keys[i], Py_None) < 0)
            Py_CLEAR(template);
    }
    return template;
}

/* bind(Event, shared_part, reference, hint, flat_reference): what ecs_json and to_flat read and fall back to,
 * from event.py. */
static PyObject *bind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyType_Check(args[0]) || !PyCallable_Check(args[1]) || !PyCallable_Check(args[2])
        || !PyCallable_Check(args[3]) || !PyCallable_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "bind(event_type, shared_part, reference, hint, flat_reference)");
        return NULL;
    }
    State *st = state_of(module);
    Py_ssize_t offsets[F_ALL];
    for (int i = 0; i < F_ALL; i++) {
        PyObject *descr = PyObject_GetAttrString(args[0], FIELD_NAMES[i]);
        if (descr == NULL)
            return NULL;
        int slot = Py_IS_TYPE(descr, &PyMemberDescr_Type)
                   && ((PyMemberDescrObject *)descr)->d_member->type == Py_T_OBJECT_EX;
        if (slot)
            offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!slot)
            return PyErr_Format(PyExc_TypeError, "%R.%s is not a slot: Event must stay a slots dataclass", args[0],
                                FIELD_NAMES[i]);
    }
    PyObject *keys[N_FLAT_KEYS] = {NULL}, *template = NULL;
    for (size_t i = 0; i < N_FLAT_KEYS; i++) {
        if ((keys[i] = PyUnicode_InternFromString(FLAT_KEYS[i].key)) == NULL)
            goto failed;
    }
    if ((template = new_flat_template(keys)) == NULL)
        goto failed;
    clear(module); /* the memos of another shared_part and hint go too */
    st->event_type = (PyTypeObject *)Py_NewRef(args[0]);
    st->shared_part = Py_NewRef(args[1]);
    st->reference = Py_NewRef(args[2]);
    st->hint = Py_NewRef(args[3]);
    st->flat_reference = Py_NewRef(args[4]);
    memcpy(st->flat_keys, keys, sizeof(keys)); /* their references move to the state */
    st->flat_template = template;
    memcpy(st->offsets, offsets, sizeof(offsets));
    Py_RETURN_NONE;
failed:
    for (size_t i = 0; i < N_FLAT_KEYS; i++)
        Py_XDECREF(keys[i]);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"ecs_json", (PyCFunction)(void (*)(void))ecs_json, METH_FASTCALL | METH_KEYWORDS,
     "ecs_json(event, ingest_time, newline=False) -> bytes: event.ecs_json_reference, byte for byte."},
    {"to_flat", (PyCFunction)(void (*)(void))to_flat, METH_FASTCALL | METH_KEYWORDS,
     "to_flat(event) -> dict: event.to_flat_reference, the same keys in the same order and the same values."},
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "bind(event_type, shared_part, reference, hint, flat_reference): done once by event.py at import."},
    {NULL, NULL, 0, NULL},
};

static int traverse(PyObject *module, visitproc visit, void *arg)
{
    State *st = state_of(module);
    Py_VISIT(st->event_type);
    Py_VISIT(st->shared_part);
    Py_VISIT(st->reference);
    Py_VISIT(st->hint);
    Py_VISIT(st->flat_reference);
    Py_VISIT(st->flat_template);
    return 0;
}

static int clear(PyObject *module)
{
    State *st = state_of(module);
    Py_CLEAR(st->event_type);
    Py_CLEAR(st->shared_part);
    Py_CLEAR(st->reference);
    Py_CLEAR(st->hint);
    Py_CLEAR(st->flat_reference);
    Py_CLEAR(st->flat_template);
    for (size_t i = 0; i < N_FLAT_KEYS; i++)
        Py_CLEAR(st->flat_keys[i]);
    for (int i = 0; i < HINT_MEMO_SIZE; i++) {
        Py_CLEAR(st->hints[i].kind);
        Py_CLEAR(st->hints[i].reason);
        Py_CLEAR(st->hints[i].hint);
    }
    for (int i = 0; i < MEMO_SIZE; i++) {
        Py_CLEAR(st->memo[i].kind);
        Py_CLEAR(st->memo[i].reason);
        Py_CLEAR(st->memo[i].text);
        Py_CLEAR(st->memo[i].part);
    }
    return 0;
}

static void free_module(void *module)
{
    clear((PyObject *)module);
    State *st = state_of((PyObject *)module);
    PyMem_Free(st->buf);
    st->buf = NULL;
    st->cap = 0;
}

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "named_senderr._event_json",
    "event.ecs_json_reference in C, byte for byte, and event.to_flat_reference, key for key.",
    sizeof(State), METHODS, NULL, traverse, clear, free_module,
};

PyMODINIT_FUNC PyInit__event_json(void)
{
    return PyModule_Create(&MODULE); /* its state starts zeroed: unbound, no buffer */
}
