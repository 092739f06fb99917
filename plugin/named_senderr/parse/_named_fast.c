/* ParseLines' loop (engine/transforms.py) over a batch of Lines, in C, on the happy path only.

A line is parsed here only when it takes the common road through
NamedLineParser.parse_bytes: not oversize, strict UTF-8, a candidate, not JSON,
matched by a pattern, every check of _event passed, its (kind, reason) in the
parser's cache. Every other line is handed to the Python reference
(transforms.parse_line) for that line alone, so a rare case can never come out
differently; this file never builds a Rejection. parse/fast.py names every Python
object this module reads and hands them over once per parser.

Built with PCRE2 (setup.py defines NAMED_SENDERR_PCRE2 where libpcre2-dev is
installed), a line whose bytes are all printable ASCII or tabs is matched by
PCRE2's JIT on the same pattern sources: there Python's str-pattern classes
(\s, \d, \w) and PCRE2's agree, and fast.py hands over only sources whose
syntax means the same in both. Every other line, a pattern PCRE2 refuses, and
any PCRE2 error (its JIT stack, its match limit) keep Python's re.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <string.h>

#ifdef NAMED_SENDERR_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

/* named.FIELDS, in its order: the captures _event reads. */
enum {
    F_PHRASE, F_REPEAT, F_REPEAT_CLOSE, F_IP, F_PORT, F_QNAME, F_LOG_TIME, F_NAMED_TIME, F_REASON_TEXT, F_PID,
    F_PRIORITY, F_BIND_MESSAGE, F_SCOPE, F_CLIENT_PTR, F_VIEW, F_SIGNER, F_NETMGR_PTR, F_ZONE, F_ZONE_CLASS, F_HOST,
    F_PROGRAM, F_CATEGORY, F_SEVERITY, F_FACILITY, F_SYSLOG_SEVERITY, F_ASL_LEVEL, F_CONTAINER, F_INTERNAL_PHRASE,
    F_DESTINATION_IP, F_DESTINATION_PORT, F_DESTINATION_SCOPE, N_FIELDS
};
static const char *const FIELD_NAMES[N_FIELDS] = {
    "phrase", "repeat_count", "repeat_close", "client_ip", "client_port", "qname", "log_time", "named_time",
    "reason_text", "pid", "priority", "bind_message", "scope", "client_ptr", "view", "signer", "netmgr_ptr", "zone",
    "zone_class", "host", "program", "category", "severity", "facility", "syslog_severity", "asl_level", "container",
    "internal_phrase", "destination_ip", "destination_port", "destination_scope",
};

/* Event's fields, in its order. */
enum {
    E_MESSAGE_KIND, E_REASON, E_REASON_TEXT, E_MESSAGE, E_ORIGINAL, E_TIMESTAMP, E_TIMESTAMP_VALID, E_CLIENT_IP,
    E_CLIENT_PORT, E_SCOPE, E_CLIENT_PTR, E_QNAME, E_VIEW, E_SIGNER, E_NETMGR_PTR, E_ZONE, E_ZONE_CLASS,
    E_REPEAT_COUNT, E_HOST, E_PROGRAM, E_PID, E_CATEGORY, E_SEVERITY, E_PRIORITY, E_FACILITY, E_SYSLOG_SEVERITY,
    E_CONTAINER, E_FILE, E_OFFSET, E_FIRST_SEEN, E_LAST_SEEN, E_ROLLUP_WINDOW, E_INGESTED, E_DESTINATION_IP,
    E_DESTINATION_PORT, N_EVENT
};
static const char *const EVENT_NAMES[N_EVENT] = {
    "message_kind", "reason", "reason_text", "message", "original", "timestamp", "timestamp_valid", "client_ip",
    "client_port", "scope", "client_ptr", "qname", "view", "signer", "netmgr_ptr", "zone", "zone_class",
    "repeat_count", "host", "program", "pid", "category", "severity", "priority", "facility", "syslog_severity",
    "container", "file", "offset", "first_seen", "last_seen", "rollup_window", "ingested", "destination_ip",
    "destination_port",
};

/* The Line fields the loop reads. */
enum { L_DATA, L_FILE, L_OFFSET, L_HOST, L_OVERSIZE, L_TIME, N_LINE };
static const char *const LINE_NAMES[N_LINE] = {"data", "file", "offset", "host", "oversize", "time"};

typedef struct {
    PyObject *match;            /* the pattern's bound match() */
    Py_ssize_t pick[N_FIELDS];  /* index of each field in match.groups(), -1 where the pattern has no such capture */
#ifdef NAMED_SENDERR_PCRE2
    pcre2_code *code;           /* the same source, JIT-compiled; NULL where the pattern stays on re */
    pcre2_match_data *data;
#endif
} Pattern;

typedef struct {
    PyObject_HEAD
    PyObject *fallback;    /* parse_line(line, default_host, ingested): the reference for one line */
    PyObject *groups;      /* re.Match.groups */
    PyObject *reasons;     /* parser._reasons: (phrase, reason_text) -> (kind, reason) */
    PyObject *classify;    /* parser.classify(phrase, reason_text): a text not seen yet, into reasons */
    PyObject *time_cache;  /* TimestampNormalizer._cache: head -> base or None */
    PyObject *time_minutes; /* TimestampNormalizer._minutes: head up to the minute -> its UTC minute or None */
    PyObject *to_rfc3339;
    PyTypeObject *event_type;
    PyTypeObject *line_type;
    PyObject *empty;       /* "" for ``bind_message or ""`` */
    PyObject *names[N_LINE];
    PyObject *last_time;   /* the last time text converted, and its result: a storm logs many in one ms */
    PyObject *last_stamp;
    int started;           /* __init__ ran (a second run would leak the first's references) */
    Pattern *patterns;
    Py_ssize_t npatterns;
    Py_ssize_t pcre2_patterns; /* patterns on PCRE2 */
    Py_ssize_t pcre2_lines;    /* lines a PCRE2 pattern matched */
    PyObject *pcre2_refused;   /* why each pattern that stays on re does (a tuple of str) */
    Py_ssize_t max_line_bytes;
    Py_ssize_t max_qname_chars;
    Py_ssize_t event_offset[N_EVENT];
    Py_ssize_t line_offset[N_LINE];
} Loop;

/* The slot offset of a slots-dataclass field: writing there is what its member descriptor does. */
static int slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *offset)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) {
        return -1;
    }
    int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) && ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX
             && !(((PyMemberDescrObject *)descr)->d_member->flags & READONLY);
    if (ok) {
        *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    Py_DECREF(descr);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a writable slot", type->tp_name, name);
        return -1;
    }
    return 0;
}

/* A tuple of str must be exactly ``names``: the C enums above follow the Python side. */
static int same_names(PyObject *given, const char *const *names, Py_ssize_t n, const char *what)
{
    if (!PyTuple_Check(given) || PyTuple_GET_SIZE(given) != n) {
        PyErr_Format(PyExc_TypeError, "%s: expected a tuple of %zd names", what, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(given, i);
        if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, names[i]) != 0) {
            PyErr_Format(PyExc_TypeError, "%s[%zd] is %R, _named_fast.c expects '%s'", what, i, name, names[i]);
            return -1;
        }
    }
    return 0;
}

#ifdef NAMED_SENDERR_PCRE2
/* Why ``source`` cannot go to PCRE2 (a new str), or NULL with pattern->code set; NULL with an error set on one. */
static PyObject *pcre2_refusal(Pattern *pattern, PyObject *source)
{
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(source, &size);
    if (text == NULL) {
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(source)) {
        return PyUnicode_FromString("its source is not ASCII");
    }
    int error;
    PCRE2_SIZE at;
    PCRE2_UCHAR message[256];
    pattern->code = pcre2_compile((PCRE2_SPTR)text, (PCRE2_SIZE)size, PCRE2_ANCHORED, &error, &at, NULL);
    if (pattern->code == NULL || (error = pcre2_jit_compile(pattern->code, PCRE2_JIT_COMPLETE)) < 0) {
        pcre2_get_error_message(error, message, sizeof(message));
        return PyUnicode_FromFormat("PCRE2 refused it: %s", (const char *)message);
    }
    /* the group numbers must be re's: groups() and the ovector then say the same thing */
    for (int f = 0; f < N_FIELDS; f++) {
        int number = pcre2_substring_number_from_name(pattern->code, (PCRE2_SPTR)FIELD_NAMES[f]);
        if ((number < 0 ? -1 : number - 1) != pattern->pick[f]) {
            return PyUnicode_FromFormat("PCRE2 numbers its group %s otherwise", FIELD_NAMES[f]);
        }
    }
    if ((pattern->data = pcre2_match_data_create_from_pattern(pattern->code, NULL)) == NULL) {
        PyErr_NoMemory();
    }
    return NULL;
}
#endif

/* Put the pattern on PCRE2 where it can be, else note why not in ``refused``. */
static int use_pcre2(Loop *self, Pattern *pattern, PyObject *source, Py_ssize_t index, PyObject *refused)
{
    if (source == Py_None) {
        return 0;
    }
    if (!PyUnicode_Check(source)) {
        PyErr_Format(PyExc_TypeError, "patterns[%zd]: its source is a str or None", index);
        return -1;
    }
#ifdef NAMED_SENDERR_PCRE2
    PyObject *why = pcre2_refusal(pattern, source);
    if (why == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (why == NULL) {
        self->pcre2_patterns++;
        return 0;
    }
    pcre2_code_free(pattern->code); /* NULL is fine */
    pattern->code = NULL;
#else
    (void)pattern;
    (void)self;
    PyObject *why = PyUnicode_FromString("_named_fast was built without PCRE2 (libpcre2-dev)");
#endif
    PyObject *line = why == NULL ? NULL : PyUnicode_FromFormat("pattern %zd stays on Python's re: %U", index, why);
    Py_XDECREF(why);
    int status = line == NULL ? -1 : PyList_Append(refused, line);
    Py_XDECREF(line);
    return status;
}

static int read_patterns(Loop *self, PyObject *patterns)
{
    PyObject *refused = PyList_New(0);
    if (refused == NULL) {
        return -1;
    }
    self->pcre2_refused = refused; /* a list while it fills, a tuple once read */
    PyObject *seq = PySequence_Fast(patterns, "patterns: a sequence of (match, picks, source or None)");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->patterns = PyMem_Calloc(n ? n : 1, sizeof(Pattern));
    if (self->patterns == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *match, *picks, *source;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OO!O", &match, &PyTuple_Type, &picks, &source)) {
            Py_DECREF(seq);
            return -1;
        }
        if (PyTuple_GET_SIZE(picks) != N_FIELDS) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_TypeError, "patterns[%zd]: %d picks expected", i, N_FIELDS);
            return -1;
        }
        Pattern *pattern = &self->patterns[i];
        for (Py_ssize_t f = 0; f < N_FIELDS; f++) {
            pattern->pick[f] = PyLong_AsSsize_t(PyTuple_GET_ITEM(picks, f));
            if (pattern->pick[f] == -1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return -1;
            }
        }
        pattern->match = Py_NewRef(match);
        self->npatterns = i + 1;
        if (use_pcre2(self, pattern, source, i, refused) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    self->pcre2_refused = PyList_AsTuple(refused);
    Py_DECREF(refused);
    return self->pcre2_refused == NULL ? -1 : 0;
}

static int Loop_init(Loop *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"fallback", "patterns", "groups", "reasons", "classify", "time_cache",
                               "time_minutes", "to_rfc3339", "event", "event_fields", "line", "fields",
                               "max_line_bytes", "max_qname_chars", NULL};
    PyObject *fallback, *patterns, *groups, *reasons, *classify, *time_cache, *time_minutes, *to_rfc3339,
        *event_fields, *fields;
    PyTypeObject *event_type, *line_type;
    if (self->started) {
        PyErr_SetString(PyExc_TypeError, "a Loop is initialized once");
        return -1;
    }
    self->started = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOO!OO!O!OO!OO!Onn", keywords, &fallback, &patterns, &groups,
                                     &PyDict_Type, &reasons, &classify, &PyDict_Type, &time_cache, &PyDict_Type,
                                     &time_minutes, &to_rfc3339, &PyType_Type,
                                     &event_type, &event_fields, &PyType_Type, &line_type, &fields,
                                     &self->max_line_bytes, &self->max_qname_chars)) {
        return -1;
    }
    if (same_names(fields, FIELD_NAMES, N_FIELDS, "fields") < 0
        || same_names(event_fields, EVENT_NAMES, N_EVENT, "event_fields") < 0) {
        return -1;
    }
    /* Every slot is written: an Event with a slot left empty would break its __eq__ and __repr__. */
    if (event_type->tp_basicsize != (Py_ssize_t)(sizeof(PyObject) + N_EVENT * sizeof(PyObject *))) {
        PyErr_Format(PyExc_TypeError, "%s has slots besides its %d fields", event_type->tp_name, N_EVENT);
        return -1;
    }
    for (int i = 0; i < N_EVENT; i++) {
        if (slot_offset(event_type, EVENT_NAMES[i], &self->event_offset[i]) < 0) {
            return -1;
        }
    }
    for (int i = 0; i < N_LINE; i++) {
        if (slot_offset(line_type, LINE_NAMES[i], &self->line_offset[i]) < 0) {
            return -1;
        }
        if ((self->names[i] = PyUnicode_InternFromString(LINE_NAMES[i])) == NULL) {
            return -1;
        }
    }
    if ((self->empty = PyUnicode_New(0, 0)) == NULL || read_patterns(self, patterns) < 0) {
        return -1;
    }
    self->fallback = Py_NewRef(fallback);
    self->groups = Py_NewRef(groups);
    self->reasons = Py_NewRef(reasons);
    self->classify = Py_NewRef(classify);
    self->time_cache = Py_NewRef(time_cache);
    self->time_minutes = Py_NewRef(time_minutes);
    self->to_rfc3339 = Py_NewRef(to_rfc3339);
    self->event_type = (PyTypeObject *)Py_NewRef(event_type);
    self->line_type = (PyTypeObject *)Py_NewRef(line_type);
    return 0;
}

static int Loop_traverse(Loop *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->groups);
    Py_VISIT(self->reasons);
    Py_VISIT(self->classify);
    Py_VISIT(self->time_cache);
    Py_VISIT(self->time_minutes);
    Py_VISIT(self->to_rfc3339);
    Py_VISIT(self->event_type);
    Py_VISIT(self->line_type);
    Py_VISIT(self->last_time);
    Py_VISIT(self->last_stamp);
    for (Py_ssize_t i = 0; i < self->npatterns; i++) {
        Py_VISIT(self->patterns[i].match);
    }
    return 0;
}

static int Loop_clear(Loop *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->groups);
    Py_CLEAR(self->reasons);
    Py_CLEAR(self->classify);
    Py_CLEAR(self->time_cache);
    Py_CLEAR(self->time_minutes);
    Py_CLEAR(self->to_rfc3339);
    Py_CLEAR(self->event_type);
    Py_CLEAR(self->line_type);
    Py_CLEAR(self->empty);
    Py_CLEAR(self->last_time);
    Py_CLEAR(self->last_stamp);
    Py_CLEAR(self->pcre2_refused);
    for (int i = 0; i < N_LINE; i++) {
        Py_CLEAR(self->names[i]);
    }
    for (Py_ssize_t i = 0; i < self->npatterns; i++) {
        Py_CLEAR(self->patterns[i].match);
    }
    return 0;
}

static void Loop_dealloc(Loop *self)
{
    PyObject_GC_UnTrack(self);
    Loop_clear(self);
#ifdef NAMED_SENDERR_PCRE2
    for (Py_ssize_t i = 0; i < self->npatterns; i++) {
        pcre2_match_data_free(self->patterns[i].data);
        pcre2_code_free(self->patterns[i].code);
    }
#endif
    PyMem_Free(self->patterns);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A line's field, a new reference: read from its slot when it is exactly a Line, else by attribute. */
static PyObject *line_field(Loop *self, PyObject *line, int field)
{
    if (Py_IS_TYPE(line, self->line_type)) {
        PyObject *value = *(PyObject **)((char *)line + self->line_offset[field]);
        if (value == NULL) {
            PyErr_SetString(PyExc_AttributeError, LINE_NAMES[field]);
        }
        return Py_XNewRef(value);
    }
    return PyObject_GetAttr(line, self->names[field]);
}

/* Python's truth of ``value``: 1, 0, or -1 with an error. */
static int truthy(PyObject *value)
{
    if (value == Py_None) {
        return 0;
    }
    if (PyUnicode_CheckExact(value)) {
        return PyUnicode_GET_LENGTH(value) > 0;
    }
    return PyObject_IsTrue(value);
}

#define HAS(literal) (memmem(s, n, literal, sizeof(literal) - 1) != NULL)

/* named.is_candidate on the line's bytes: every phrase is ASCII, which UTF-8 (and its replacement of invalid
   bytes) keeps byte for byte, so the answer is the text's. */
static int is_candidate(const char *s, size_t n)
{
    if (HAS("end")
        && (HAS("error sending") || HAS("send failed") || HAS("Sending UDP messages failed") || HAS("send exceeded")
            || HAS("sending zone data") || HAS("': send:") || (HAS("internal_send: ") && memchr(s, '#', n) != NULL))) {
        return 1;
    }
    return n > 0 && s[0] == '{' && HAS("\"MESSAGE\":[");
}

/* int(text), or NULL with an error (the reference then raises or rejects it itself). */
static PyObject *to_int(PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "not a str");
        return NULL;
    }
    return PyLong_FromUnicodeObject(text, 10);
}

/* named._checked_port: the port, or NULL (with an error or not) where the reference must decide. */
static PyObject *checked_port(PyObject *ip, PyObject *port_text)
{
    if (!PyUnicode_Check(ip)) {
        return NULL;
    }
    Py_ssize_t colon = PyUnicode_FindChar(ip, ':', 0, PyUnicode_GET_LENGTH(ip), 1);
    if (colon == -2) {
        return NULL;
    }
    if (colon >= 0) {
        unsigned char packed[16];
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(ip, &size);
        /* A NUL makes socket.inet_pton raise ValueError: the reference's own way to end. */
        if (utf8 == NULL || (Py_ssize_t)strlen(utf8) != size || inet_pton(AF_INET6, utf8, packed) != 1) {
            return NULL;
        }
    }
    PyObject *port = to_int(port_text);
    if (port == NULL) {
        return NULL;
    }
    int overflow;
    long value = PyLong_AsLongAndOverflow(port, &overflow);
    if (overflow || value > 65535 || (value == -1 && PyErr_Occurred())) {
        Py_DECREF(port);
        return NULL;
    }
    return port;
}

static int same_ascii(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return PyUnicode_IS_ASCII(a) && PyUnicode_IS_ASCII(b) && n == PyUnicode_GET_LENGTH(b)
           && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), n) == 0;
}

#ifdef NAMED_SENDERR_PCRE2
/* Every byte printable ASCII or a tab: there PCRE2 without UTF/UCP and Python's str patterns read alike. */
static int plain_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* PCRE2's match of the line: 1 with *groups a new tuple of FIELDS' values (None where unset, as re gives), 0 for
   no match, -1 with an error set, -2 where re must decide (a PCRE2 error such as its JIT stack's limit). */
static int pcre2_fields(Pattern *pattern, const char *s, size_t n, PyObject **groups)
{
    int found = pcre2_jit_match(pattern->code, (PCRE2_SPTR)s, n, 0, 0, pattern->data, NULL);
    if (found == PCRE2_ERROR_NOMATCH) {
        return 0;
    }
    if (found <= 0) {
        return -2;
    }
    /* copied before any allocation: a collection it starts may run code that matches again */
    const PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(pattern->data);
    PCRE2_SIZE start[N_FIELDS], end[N_FIELDS];
    for (int f = 0; f < N_FIELDS; f++) {
        Py_ssize_t group = pattern->pick[f] + 1;
        start[f] = group > 0 && group < found ? ovector[2 * group] : PCRE2_UNSET;
        end[f] = start[f] == PCRE2_UNSET ? 0 : ovector[2 * group + 1];
    }
    if ((*groups = PyTuple_New(N_FIELDS)) == NULL) {
        return -1;
    }
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *value = start[f] == PCRE2_UNSET ? Py_NewRef(Py_None) : PyUnicode_New(end[f] - start[f], 127);
        if (value == NULL) {
            return -1;
        }
        if (value != Py_None) {
            memcpy(PyUnicode_1BYTE_DATA(value), s + start[f], end[f] - start[f]);
        }
        PyTuple_SET_ITEM(*groups, f, value);
    }
    return 1;
}
#endif

/* A second not in the cache, built from its minute as timestamp._utc does: f"{minute}:{SS}.{fraction}Z" for two
   ASCII digits SS below 60. NULL without an exception: ask to_rfc3339 (a minute not seen, or to be converted
   second by second). */
static PyObject *from_minute(Loop *self, PyObject *text, const Py_UCS1 *chars, Py_ssize_t n)
{
    if (n < 8 || chars[n - 6] < '0' || chars[n - 6] > '5' || chars[n - 5] < '0' || chars[n - 5] > '9') {
        return NULL;
    }
    PyObject *key = PyUnicode_Substring(text, 0, n - 7);
    if (key == NULL) {
        return NULL;
    }
    PyObject *minute = PyDict_GetItemWithError(self->time_minutes, key); /* borrowed */
    Py_DECREF(key);
    if (minute == NULL || !PyUnicode_CheckExact(minute) || !PyUnicode_IS_ASCII(minute)) {
        return NULL; /* an error stays set for the caller */
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(minute);
    PyObject *stamp = PyUnicode_New(size + 8, 127);
    if (stamp == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(stamp);
    memcpy(out, PyUnicode_1BYTE_DATA(minute), size);
    out[size] = ':';
    memcpy(out + size + 1, chars + n - 6, 2); /* SS */
    out[size + 3] = '.';
    memcpy(out + size + 4, chars + n - 3, 3);
    out[size + 7] = 'Z';
    return stamp;
}

/* TimestampNormalizer.to_rfc3339(text): named's print-time from its cache as to_rfc3339 builds it, anything else
   (and a miss, which fills the cache) by calling it. A new reference to a str or None, NULL on an error. */
static PyObject *timestamp(Loop *self, PyObject *text)
{
    if (self->last_time != NULL && same_ascii(text, self->last_time)) {
        return Py_NewRef(self->last_stamp);
    }
    PyObject *stamp = NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const Py_UCS1 *chars = PyUnicode_IS_ASCII(text) ? PyUnicode_1BYTE_DATA(text) : NULL;
    if (chars != NULL && n >= 7 && chars[n - 4] == '.' && chars[n - 7] == ':') {
        PyObject *head = PyUnicode_Substring(text, 0, n - 4);
        if (head == NULL) {
            return NULL;
        }
        PyObject *base = PyDict_GetItemWithError(self->time_cache, head); /* borrowed */
        Py_DECREF(head);
        if (base == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (base == Py_None) {
            stamp = Py_NewRef(Py_None);
        } else if (base != NULL && PyUnicode_CheckExact(base) && PyUnicode_IS_ASCII(base)) {
            /* f"{base}.{fraction}Z" with the fraction's three digits */
            Py_ssize_t size = PyUnicode_GET_LENGTH(base);
            if ((stamp = PyUnicode_New(size + 5, 127)) == NULL) {
                return NULL;
            }
            Py_UCS1 *out = PyUnicode_1BYTE_DATA(stamp);
            memcpy(out, PyUnicode_1BYTE_DATA(base), size);
            out[size] = '.';
            memcpy(out + size + 1, chars + n - 3, 3);
            out[size + 4] = 'Z';
        } else if (base == NULL && (stamp = from_minute(self, text, chars, n)) == NULL && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (stamp == NULL && (stamp = PyObject_CallOneArg(self->to_rfc3339, text)) == NULL) {
        return NULL;
    }
    Py_XSETREF(self->last_time, Py_NewRef(text));
    Py_XSETREF(self->last_stamp, Py_NewRef(stamp));
    return stamp;
}

/* The line's Event, or NULL: hand the line to the reference (any error on the way is dropped with it, the
   reference meets it again). *candidate is set to 0 for a line that is no candidate (no event, no rejection). */
static PyObject *fast_event(Loop *self, PyObject *line, PyObject *default_host, PyObject *ingested, int *candidate)
{
    PyObject *data = NULL, *text = NULL, *match = NULL, *groups = NULL, *key = NULL, *stamp = NULL;
    PyObject *kind_reason = NULL, *port = NULL, *destination_port = NULL, *repeat = NULL, *pid = NULL;
    PyObject *priority = NULL;
    PyObject *file = NULL, *offset = NULL, *line_host = NULL, *line_time = NULL, *event = NULL;
    PyObject *fields[N_FIELDS];
    *candidate = 1;

    PyObject *oversize = line_field(self, line, L_OVERSIZE);
    int is_oversize = oversize == NULL ? -1 : oversize == Py_False ? 0 : truthy(oversize);
    Py_XDECREF(oversize);
    if (is_oversize != 0 || (data = line_field(self, line, L_DATA)) == NULL || !PyBytes_CheckExact(data)
        || PyBytes_GET_SIZE(data) > self->max_line_bytes) {
        goto done;
    }
    const char *s = PyBytes_AS_STRING(data);
    size_t n = (size_t)PyBytes_GET_SIZE(data); /* not negative: a bytes object's size */
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) { /* text.rstrip("\r\n") */
        n--;
    }
    if (!is_candidate(s, n)) {
        *candidate = 0;
        goto done;
    }
    if (s[0] == '{' || (text = PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, NULL)) == NULL
        || PyUnicode_GET_LENGTH(text) > self->max_line_bytes) {
        goto done;
    }
#ifdef NAMED_SENDERR_PCRE2
    int plain = plain_ascii(s, n);
#endif
    for (Py_ssize_t i = 0; i < self->npatterns && match == NULL; i++) {
#ifdef NAMED_SENDERR_PCRE2
        if (plain && self->patterns[i].code != NULL) {
            int found = pcre2_fields(&self->patterns[i], s, n, &groups);
            if (found == 1) {
                self->pcre2_lines++;
                match = Py_NewRef(Py_True); /* matched: ends the search */
                for (int f = 0; f < N_FIELDS; f++) {
                    fields[f] = PyTuple_GET_ITEM(groups, f);
                }
                break;
            }
            if (found == -1) {
                goto done;
            }
            if (found == 0) {
                continue;
            }
        }
#endif
        if ((match = PyObject_Vectorcall(self->patterns[i].match, &text, 1, NULL)) == NULL) {
            goto done;
        }
        if (match == Py_None) {
            Py_CLEAR(match);
            continue;
        }
        if ((groups = PyObject_Vectorcall(self->groups, &match, 1, NULL)) == NULL || !PyTuple_CheckExact(groups)) {
            goto done;
        }
        for (int f = 0; f < N_FIELDS; f++) {
            Py_ssize_t at = self->patterns[i].pick[f];
            fields[f] = at >= 0 && at < PyTuple_GET_SIZE(groups) ? PyTuple_GET_ITEM(groups, at) : Py_None;
        }
    }
    if (match == NULL) { /* no pattern: the reference diagnoses it */
        goto done;
    }
    /* _event's checks, in its order; each failure is a Rejection the reference makes */
    if ((fields[F_REPEAT] == Py_None) != (fields[F_REPEAT_CLOSE] == Py_None)) {
        goto done;
    }
    PyObject *phrase = fields[F_PHRASE], *scope = fields[F_SCOPE];
    if (fields[F_IP] != Py_None && (port = checked_port(fields[F_IP], fields[F_PORT])) == NULL) {
        goto done;
    }
    if (fields[F_DESTINATION_IP] != Py_None) {
        if ((destination_port = checked_port(fields[F_DESTINATION_IP], fields[F_DESTINATION_PORT])) == NULL) {
            goto done;
        }
        phrase = fields[F_INTERNAL_PHRASE];
        scope = fields[F_DESTINATION_SCOPE];
    }
    PyObject *qname = fields[F_QNAME];
    if (qname != Py_None && (!PyUnicode_Check(qname) || PyUnicode_GET_LENGTH(qname) > self->max_qname_chars)) {
        goto done;
    }
    int log_time = truthy(fields[F_LOG_TIME]);
    PyObject *time_text = log_time > 0 ? fields[F_LOG_TIME] : fields[F_NAMED_TIME];
    int has_time = log_time < 0 ? -1 : truthy(time_text);
    if (has_time < 0 || (has_time && !PyUnicode_Check(time_text))) {
        goto done;
    }
    if ((stamp = has_time ? timestamp(self, time_text) : Py_NewRef(Py_None)) == NULL) {
        goto done;
    }
    if ((key = PyTuple_Pack(2, phrase, fields[F_REASON_TEXT])) == NULL) {
        goto done;
    }
    /* held: reading a Line subclass's attribute below may run code that clears the cache */
    kind_reason = Py_XNewRef(PyDict_GetItemWithError(self->reasons, key));
    if (kind_reason == NULL && !PyErr_Occurred()) { /* a text not seen yet: classified and kept for the next */
        PyObject *texts[] = {phrase, fields[F_REASON_TEXT]};
        kind_reason = PyObject_Vectorcall(self->classify, texts, 2, NULL);
    }
    if (kind_reason == NULL || !PyTuple_CheckExact(kind_reason) || PyTuple_GET_SIZE(kind_reason) != 2) {
        goto done; /* an error, or not a pair: the reference meets it again */
    }
    int has = 0;
    if ((fields[F_REPEAT] != Py_None && (has = truthy(fields[F_REPEAT])) < 0)
        || (repeat = has ? to_int(fields[F_REPEAT]) : PyLong_FromLong(1)) == NULL) {
        goto done;
    }
    if ((has = truthy(fields[F_PID])) < 0 || (has && (pid = to_int(fields[F_PID])) == NULL)) {
        goto done;
    }
    if ((has = truthy(fields[F_PRIORITY])) < 0 || (has && (priority = to_int(fields[F_PRIORITY])) == NULL)) {
        goto done;
    }
    int message = truthy(fields[F_BIND_MESSAGE]);
    int syslog_severity = truthy(fields[F_SYSLOG_SEVERITY]);
    int event_host = truthy(fields[F_HOST]);
    if (message < 0 || syslog_severity < 0 || event_host < 0) {
        goto done;
    }
    /* the provenance parse_line adds */
    if ((file = line_field(self, line, L_FILE)) == NULL || (offset = line_field(self, line, L_OFFSET)) == NULL
        || (line_host = line_field(self, line, L_HOST)) == NULL || (line_time = line_field(self, line, L_TIME)) == NULL) {
        goto done;
    }
    PyObject *host = fields[F_HOST];
    if (!event_host) {
        int has_line_host = truthy(line_host);
        if (has_line_host < 0) {
            goto done;
        }
        host = has_line_host ? line_host : default_host;
    }
    int has_stamp = truthy(stamp);
    if (has_stamp < 0 || (event = self->event_type->tp_alloc(self->event_type, 0)) == NULL) {
        goto done;
    }
    PyObject *values[N_EVENT] = {
        [E_MESSAGE_KIND] = PyTuple_GET_ITEM(kind_reason, 0),
        [E_REASON] = PyTuple_GET_ITEM(kind_reason, 1),
        [E_REASON_TEXT] = fields[F_REASON_TEXT],
        [E_MESSAGE] = message ? fields[F_BIND_MESSAGE] : self->empty,
        [E_ORIGINAL] = text,
        [E_TIMESTAMP] = has_stamp ? stamp : line_time,
        [E_TIMESTAMP_VALID] = stamp != Py_None || time_text == Py_None ? Py_True : Py_False,
        [E_CLIENT_IP] = fields[F_IP],
        [E_CLIENT_PORT] = port ? port : Py_None,
        [E_SCOPE] = scope,
        [E_CLIENT_PTR] = fields[F_CLIENT_PTR],
        [E_QNAME] = qname,
        [E_VIEW] = fields[F_VIEW],
        [E_SIGNER] = fields[F_SIGNER],
        [E_NETMGR_PTR] = fields[F_NETMGR_PTR],
        [E_ZONE] = fields[F_ZONE],
        [E_ZONE_CLASS] = fields[F_ZONE_CLASS],
        [E_REPEAT_COUNT] = repeat,
        [E_HOST] = host,
        [E_PROGRAM] = fields[F_PROGRAM],
        [E_PID] = pid ? pid : Py_None,
        [E_CATEGORY] = fields[F_CATEGORY],
        [E_SEVERITY] = fields[F_SEVERITY],
        [E_PRIORITY] = priority ? priority : Py_None,
        [E_FACILITY] = fields[F_FACILITY],
        [E_SYSLOG_SEVERITY] = syslog_severity ? fields[F_SYSLOG_SEVERITY] : fields[F_ASL_LEVEL],
        [E_CONTAINER] = fields[F_CONTAINER],
        [E_FILE] = file,
        [E_OFFSET] = offset,
        [E_FIRST_SEEN] = Py_None,
        [E_LAST_SEEN] = Py_None,
        [E_ROLLUP_WINDOW] = Py_None,
        [E_INGESTED] = ingested,
        [E_DESTINATION_IP] = fields[F_DESTINATION_IP],
        [E_DESTINATION_PORT] = destination_port ? destination_port : Py_None,
    };
    for (int i = 0; i < N_EVENT; i++) {
        *(PyObject **)((char *)event + self->event_offset[i]) = Py_NewRef(values[i]);
    }
done:
    if (event == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(data);
    Py_XDECREF(text);
    Py_XDECREF(match);
    Py_XDECREF(groups);
    Py_XDECREF(key);
    Py_XDECREF(kind_reason);
    Py_XDECREF(stamp);
    Py_XDECREF(port);
    Py_XDECREF(destination_port);
    Py_XDECREF(repeat);
    Py_XDECREF(pid);
    Py_XDECREF(priority);
    Py_XDECREF(file);
    Py_XDECREF(offset);
    Py_XDECREF(line_host);
    Py_XDECREF(line_time);
    return event;
}

/* Loop(lines, default_host, ingested) -> (events, [(rejection, line), ...]), as transforms.pure_loop. */
static PyObject *Loop_call(Loop *self, PyObject *args, PyObject *kwargs)
{
    PyObject *lines, *default_host, *ingested;
    static char *keywords[] = {"lines", "default_host", "ingested", NULL};
    if (self->fallback == NULL) {
        PyErr_SetString(PyExc_TypeError, "Loop was not initialized");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO", keywords, &lines, &default_host, &ingested)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(lines, "lines: a sequence of Line");
    if (seq == NULL) {
        return NULL;
    }
    PyObject *events = PyList_New(0), *rejected = PyList_New(0);
    if (events == NULL || rejected == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *line = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i)); /* the fallback may run any code */
        int candidate;
        PyObject *result = fast_event(self, line, default_host, ingested, &candidate);
        if (result == NULL && candidate) {
            PyObject *call[3] = {line, default_host, ingested};
            result = PyObject_Vectorcall(self->fallback, call, 3, NULL);
            if (result == NULL) {
                Py_DECREF(line);
                goto fail;
            }
        }
        int status = 0;
        if (result != NULL && result != Py_None) {
            if (PyObject_TypeCheck(result, self->event_type)) {
                status = PyList_Append(events, result);
            } else {
                PyObject *pair = PyTuple_Pack(2, result, line);
                status = pair == NULL ? -1 : PyList_Append(rejected, pair);
                Py_XDECREF(pair);
            }
        }
        Py_XDECREF(result);
        Py_DECREF(line);
        if (status < 0) {
            goto fail;
        }
    }
    Py_DECREF(seq);
    PyObject *pair = PyTuple_Pack(2, events, rejected);
    Py_DECREF(events);
    Py_DECREF(rejected);
    return pair;
fail:
    Py_DECREF(seq);
    Py_XDECREF(events);
    Py_XDECREF(rejected);
    return NULL;
}

/* Loop.pcre2_fields(index, data): PCRE2's FIELDS for one plain-ASCII line (None: no match), for the tests that
   hold them against re's. ValueError where that pattern or line is not PCRE2's to match. */
static PyObject *Loop_pcre2_fields(Loop *self, PyObject *args)
{
    Py_ssize_t index;
    const char *s;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "ny#", &index, &s, &n)) {
        return NULL;
    }
#ifdef NAMED_SENDERR_PCRE2
    if (index >= 0 && index < self->npatterns && self->patterns[index].code != NULL && plain_ascii(s, (size_t)n)) {
        PyObject *groups = NULL;
        int found = pcre2_fields(&self->patterns[index], s, (size_t)n, &groups);
        if (found >= 0) {
            return found ? groups : Py_NewRef(Py_None);
        }
        Py_XDECREF(groups);
        if (found == -1) {
            return NULL;
        }
    }
#endif
    PyErr_Format(PyExc_ValueError, "pattern %zd does not match this line with PCRE2 (of %zd on it)", index,
                 self->pcre2_patterns);
    return NULL;
}

static PyMethodDef Loop_methods[] = {
    {"pcre2_fields", (PyCFunction)Loop_pcre2_fields, METH_VARARGS, "PCRE2's FIELDS for one line, or None"},
    {NULL},
};

static PyMemberDef Loop_members[] = {
    {"pcre2_patterns", T_PYSSIZET, offsetof(Loop, pcre2_patterns), READONLY, "patterns matched by PCRE2's JIT"},
    {"pcre2_lines", T_PYSSIZET, offsetof(Loop, pcre2_lines), READONLY, "lines a PCRE2 pattern matched"},
    {"pcre2_refused", T_OBJECT, offsetof(Loop, pcre2_refused), READONLY, "why each other pattern stays on re"},
    {NULL},
};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "named_senderr.parse._named_fast.Loop",
    .tp_doc = PyDoc_STR("Loop(*, fallback, patterns, ...)(lines, default_host, ingested): see parse/fast.py"),
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_traverse = (traverseproc)Loop_traverse,
    .tp_clear = (inquiry)Loop_clear,
    .tp_call = (ternaryfunc)Loop_call,
    .tp_members = Loop_members,
    .tp_methods = Loop_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "named_senderr.parse._named_fast",
    .m_doc = PyDoc_STR("ParseLines' loop in C on the happy path; every other line goes to the Python reference."),
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__named_fast(void)
{
    if (PyType_Ready(&LoopType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
#ifdef NAMED_SENDERR_PCRE2
    PyObject *pcre2 = Py_True;
#else
    PyObject *pcre2 = Py_False;
#endif
    if (PyModule_AddObjectRef(m, "Loop", (PyObject *)&LoopType) < 0
        || PyModule_AddObjectRef(m, "PCRE2", pcre2) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
