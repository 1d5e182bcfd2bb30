/*
 * loop._protocols._http_head -- the common HTTP/1.x request, read without the interpreter.
 *
 * Why this exists: a hello-world request through loop.pywsgi spent about a third of its
 * instructions in llhttp's Python callbacks (RequestReader.on_url, on_header, the checks of
 * on_headers_complete), against 3% in llhttp itself (docs/performance.md, "Where a request's
 * time goes"). Nearly every request a server sees is a plain one: a known method, an
 * origin-form target, HTTP/1.1 or 1.0, a few ordinary fields, no body or one framed by
 * Content-Length. This file reads exactly that case in one C call and hands it back as the
 * same values the Python reader builds, plus the request's CGI variables, which loop.pywsgi
 * otherwise made in Python for every request (about 1.7 us of about 20): the scanner has every
 * field in hand already, so the WSGI server only adds them to its per-connection environ.
 * tests/test_pywsgi_environ_scan.py checks that dict against the Python-built environ.
 *
 * Why it cannot weaken the reader: it is a filter, not a second parser. It accepts a strict
 * subset of what llhttp plus RequestReader's checks accept, and *declines* (returns None)
 * everything else -- Transfer-Encoding, an odd or too large Content-Length, a request that
 * closes the connection, Expect, Upgrade, an unknown method, an
 * absolute-form target, obs-text, a bare LF, any limit reached, an incomplete head -- and the
 * caller then feeds the very same bytes to llhttp, which parses or refuses them as before. So
 * a request is either one both parsers read identically, or one only llhttp reads. The
 * framing of what follows is never in doubt: an accepted request has no body or exactly
 * Content-Length bytes of it, which the reader counts off before it looks for the next head.
 * tests/test_http_head_scan.py checks the subset against llhttp
 * (every accepted input must come out of RequestReader alone the same way).
 *
 * scan(data, offset, max_request_line, max_header_bytes, max_headers, max_body)
 *   -> (end, method, target, version, headers, keep_alive, content_length, cgi) or None
 * where end is the offset just past the head, method and version are str, target bytes,
 * headers a list of (name, value) bytes pairs with the value's surrounding SP/HTAB removed,
 * content_length an int or None, keep_alive always True (a request that ends its connection
 * is left to llhttp, see below), and cgi a dict of the request's own CGI variables for a WSGI
 * environ (REQUEST_METHOD, PATH_INFO, QUERY_STRING, RAW_URI, REQUEST_URI, SERVER_PROTOCOL and
 * the fields as HTTP_* keys); max_body is an int or None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* The methods accepted; anything else goes to llhttp (which knows dozens, and CONNECT is
 * refused there). */
static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                      "PATCH"};
#define N_METHODS (sizeof(METHODS) / sizeof(METHODS[0]))

typedef struct {
    PyObject *methods[N_METHODS];
    PyObject *http11;
    PyObject *http10;
    PyObject *cgi_keys;     /* field name (bytes, as sent) -> CGI key (str), or "" to drop */
    PyObject *empty;        /* "" */
    PyObject *key_method, *key_path, *key_query, *key_raw_uri, *key_request_uri,
             *key_protocol, *key_cookie;
} head_state;

#define MAX_CGI_KEYS 4096

static inline head_state *
state_of(PyObject *module)
{
    return (head_state *)PyModule_GetState(module);
}

/* RFC 9110 tchar. */
static unsigned char IS_TCHAR[256];
/* Characters of an origin-form target we accept: RFC 3986 pchar plus "/" "?" and "%".  No
 * "#" (a fragment is refused by the reader), no quotes, brackets or controls. */
static unsigned char IS_TARGET[256];
/* Field value characters we accept: VCHAR, SP, HTAB.  obs-text is declined. */
static unsigned char IS_VALUE[256];

static void
fill_tables(void)
{
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        IS_TCHAR[c] = alnum || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        IS_TARGET[c] = alnum || (c && strchr("-._~!$&'()*+,;=:@/?%", c) != NULL);
        IS_VALUE[c] = (c >= 0x21 && c <= 0x7e) || c == ' ' || c == '\t';
    }
}

static inline int
lower_equals(const char *p, Py_ssize_t n, const char *lower)
{
    Py_ssize_t i = 0;
    for (; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (lower[i] != c)
            return 0;
    }
    return lower[i] == '\0';
}

/* Does the comma-separated, case-insensitive list in [p, p+n) hold the token `lower`? */
static int
has_token(const char *p, Py_ssize_t n, const char *lower)
{
    Py_ssize_t start = 0;
    while (start <= n) {
        Py_ssize_t end = start;
        while (end < n && p[end] != ',')
            end++;
        Py_ssize_t a = start, b = end;
        while (a < b && (p[a] == ' ' || p[a] == '\t'))
            a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
            b--;
        if (lower_equals(p + a, b - a, lower))
            return 1;
        start = end + 1;
    }
    return 0;
}

#define DECLINE() do { result = Py_None; Py_INCREF(result); goto done; } while (0)

/* The CGI name of a field (RFC 3875 4.1.18): "HTTP_" and the name upper-cased with "-" as "_",
 * but CONTENT_TYPE and CONTENT_LENGTH bare. A name holding "_" maps to "" and is dropped: it
 * would collide with the "-" spelling, so a client could spoof a field a proxy set (nginx and
 * gunicorn drop them too). New reference; names repeat, so they are remembered. */
static PyObject *
cgi_key(head_state *st, const char *name, Py_ssize_t len)
{
    PyObject *raw = PyBytes_FromStringAndSize(name, len);
    if (raw == NULL)
        return NULL;
    PyObject *key = PyDict_GetItemWithError(st->cgi_keys, raw);
    if (key != NULL) {
        Py_INCREF(key);
        Py_DECREF(raw);
        return key;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(raw);
        return NULL;
    }
    if (memchr(name, '_', (size_t)len) != NULL) {
        key = st->empty;
        Py_INCREF(key);
    }
    else {
        int bare = lower_equals(name, len, "content-type") ||
                   lower_equals(name, len, "content-length");
        Py_ssize_t prefix = bare ? 0 : 5;
        key = PyUnicode_New(prefix + len, 127);
        if (key == NULL) {
            Py_DECREF(raw);
            return NULL;
        }
        Py_UCS1 *out = PyUnicode_1BYTE_DATA(key);
        if (!bare)
            memcpy(out, "HTTP_", 5);
        for (Py_ssize_t i = 0; i < len; i++) {
            char c = name[i];   /* a tchar: ASCII */
            out[prefix + i] = (Py_UCS1)(c == '-' ? '_' : (c >= 'a' && c <= 'z') ? c - 32 : c);
        }
        PyUnicode_InternInPlace(&key);
    }
    if (PyDict_GET_SIZE(st->cgi_keys) < MAX_CGI_KEYS &&
            PyDict_SetItem(st->cgi_keys, raw, key) < 0) {
        Py_DECREF(raw);
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(raw);
    return key;
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* PATH_INFO: the path percent-decoded as urllib.parse.unquote_to_bytes does it ("%" not followed
 * by two hex digits stays as it is), then read as latin-1 (PEP 3333). */
static PyObject *
path_info(const char *path, Py_ssize_t len)
{
    if (memchr(path, '%', (size_t)len) == NULL)
        return PyUnicode_DecodeLatin1(path, len, NULL);
    char *decoded = PyMem_Malloc((size_t)len);
    if (decoded == NULL)
        return PyErr_NoMemory();
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        int high, low;
        if (path[i] == '%' && i + 2 < len && (high = hex_value(path[i + 1])) >= 0 &&
                (low = hex_value(path[i + 2])) >= 0) {
            decoded[n++] = (char)(high * 16 + low);
            i += 2;
        }
        else {
            decoded[n++] = path[i];
        }
    }
    PyObject *text = PyUnicode_DecodeLatin1(decoded, n, NULL);
    PyMem_Free(decoded);
    return text;
}

/* The request's CGI variables that depend on it alone: what a WSGI server adds to its
 * per-connection environ for a request the scanner read. */
static PyObject *
cgi_variables(head_state *st, PyObject *method, const char *target, Py_ssize_t target_len,
              PyObject *version, PyObject *headers)
{
    PyObject *cgi = PyDict_New();
    if (cgi == NULL)
        return NULL;
    const char *question = memchr(target, '?', (size_t)target_len);
    Py_ssize_t path_len = question ? question - target : target_len;
    PyObject *path = path_info(target, path_len);
    PyObject *query = question ? PyUnicode_DecodeLatin1(question + 1,
                                                        target_len - path_len - 1, NULL)
                               : (Py_INCREF(st->empty), st->empty);
    PyObject *uri = PyUnicode_DecodeLatin1(target, target_len, NULL);
    if (path == NULL || query == NULL || uri == NULL ||
            PyDict_SetItem(cgi, st->key_method, method) < 0 ||
            PyDict_SetItem(cgi, st->key_path, path) < 0 ||
            PyDict_SetItem(cgi, st->key_query, query) < 0 ||
            PyDict_SetItem(cgi, st->key_raw_uri, uri) < 0 ||
            PyDict_SetItem(cgi, st->key_request_uri, uri) < 0 ||
            PyDict_SetItem(cgi, st->key_protocol, version) < 0)
        goto error;
    Py_CLEAR(path);
    Py_CLEAR(query);
    Py_CLEAR(uri);
    Py_ssize_t count = PyList_GET_SIZE(headers);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        PyObject *raw = PyTuple_GET_ITEM(pair, 1);
        PyObject *key = cgi_key(st, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
        if (key == NULL)
            goto error;
        if (PyUnicode_GET_LENGTH(key) == 0) {
            Py_DECREF(key);
            continue;
        }
        PyObject *value = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw),
                                                 NULL);
        if (value == NULL) {
            Py_DECREF(key);
            goto error;
        }
        PyObject *earlier = PyDict_GetItemWithError(cgi, key);
        if (earlier != NULL) {
            /* Repeated fields are joined; cookie-pairs with "; " (RFC 6265 5.4). */
            PyObject *joined = PyUnicode_FromFormat(
                key == st->key_cookie ? "%U; %U" : "%U, %U", earlier, value);
            Py_DECREF(value);
            value = joined;
        }
        int failed = value == NULL || PyErr_Occurred() || PyDict_SetItem(cgi, key, value) < 0;
        Py_DECREF(key);
        Py_XDECREF(value);
        if (failed)
            goto error;
    }
    return cgi;
error:
    Py_XDECREF(path);
    Py_XDECREF(query);
    Py_XDECREF(uri);
    Py_DECREF(cgi);
    return NULL;
}

static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "scan(data, offset, max_request_line, "
                                         "max_header_bytes, max_headers, max_body)");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_header_bytes = PyLong_AsSsize_t(args[3]);
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[4]);
    long long max_body = args[5] == Py_None ? -1 : PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (offset < 0 || offset > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "offset outside the data");
        return NULL;
    }
    head_state *st = state_of(module);
    PyObject *result = NULL;
    PyObject *headers = NULL;
    PyObject *target = NULL;
    PyObject *cgi = NULL;
    const char *base = (const char *)view.buf;
    const char *p = base + offset;
    const char *end = base + view.len;

    /* method SP */
    const char *sp = memchr(p, ' ', (size_t)(end - p) < 8 ? (size_t)(end - p) : 8);
    if (sp == NULL)
        DECLINE();
    PyObject *method = NULL;
    for (size_t i = 0; i < N_METHODS; i++) {
        size_t len = strlen(METHODS[i]);
        if ((size_t)(sp - p) == len && memcmp(p, METHODS[i], len) == 0) {
            method = st->methods[i];
            break;
        }
    }
    if (method == NULL)
        DECLINE();
    /* origin-form target SP */
    const char *t = sp + 1;
    if (t >= end || *t != '/')
        DECLINE();
    const char *q = t;
    while (q < end && IS_TARGET[(unsigned char)*q])
        q++;
    if (q >= end || *q != ' ' || q - t > max_line)
        DECLINE();
    /* version CRLF */
    const char *v = q + 1;
    if (end - v < 10 || memcmp(v, "HTTP/1.", 7) != 0 || v[8] != '\r' || v[9] != '\n')
        DECLINE();
    int minor = v[7] == '1' ? 1 : v[7] == '0' ? 0 : -1;
    if (minor < 0)
        DECLINE();
    p = v + 10;

    headers = PyList_New(0);
    if (headers == NULL)
        goto done;
    Py_ssize_t size = 0, count = 0, hosts = 0;
    long long content_length = -1;
    const char *connection[8];
    Py_ssize_t connection_len[8];
    int connections = 0;
    for (;;) {
        if (end - p < 2)
            DECLINE();
        if (p[0] == '\r') {
            if (p[1] != '\n')
                DECLINE();
            p += 2;
            break;
        }
        const char *name = p;
        while (p < end && IS_TCHAR[(unsigned char)*p])
            p++;
        if (p == name || p >= end || *p != ':')
            DECLINE();
        Py_ssize_t name_len = p - name;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *value = p;
        while (p < end && IS_VALUE[(unsigned char)*p])
            p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            DECLINE();
        const char *value_end = p;
        while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
            value_end--;
        Py_ssize_t value_len = value_end - value;
        p += 2;
        if (++count > max_headers)
            DECLINE();
        size += 4 + name_len + value_len;
        if (size > max_header_bytes)
            DECLINE();
        /* Fields that change framing or the connection: only Host and Connection are handled
         * here; the rest are llhttp's and RequestReader's to judge. */
        switch (name_len) {
        case 4:
            if (lower_equals(name, 4, "host"))
                hosts++;
            break;
        case 6:
            if (lower_equals(name, 6, "expect"))
                DECLINE();
            break;
        case 7:
            if (lower_equals(name, 7, "upgrade"))
                DECLINE();
            break;
        case 10:
            if (lower_equals(name, 10, "connection")) {
                if (connections == 8)
                    DECLINE();
                connection[connections] = value;
                connection_len[connections++] = value_len;
            }
            break;
        case 14:
            if (lower_equals(name, 14, "content-length")) {
                /* One field of 1-18 digits (llhttp refuses a second one, a list, a sign);
                 * leading zeros are read as llhttp reads them. */
                if (content_length >= 0 || value_len == 0 || value_len > 18)
                    DECLINE();
                long long n = 0;
                for (Py_ssize_t i = 0; i < value_len; i++) {
                    if (value[i] < '0' || value[i] > '9')
                        DECLINE();
                    n = n * 10 + (value[i] - '0');
                }
                if (max_body >= 0 && n > max_body)
                    DECLINE();
                content_length = n;
            }
            break;
        case 16:
            if (lower_equals(name, 16, "proxy-connection"))
                DECLINE();
            break;
        case 17:
            if (lower_equals(name, 17, "transfer-encoding"))
                DECLINE();
            break;
        default:
            break;
        }
        PyObject *pair = Py_BuildValue("(y#y#)", name, name_len, value, value_len);
        if (pair == NULL)
            goto done;
        int failed = PyList_Append(headers, pair);
        Py_DECREF(pair);
        if (failed)
            goto done;
    }
    if (hosts > 1 || (minor == 1 && hosts != 1))
        DECLINE();
    int keep_alive = minor == 1;
    for (int i = 0; i < connections; i++) {
        if (has_token(connection[i], connection_len[i], "upgrade"))
            DECLINE();
        if (minor == 1 && has_token(connection[i], connection_len[i], "close"))
            keep_alive = 0;
        if (minor == 0 && has_token(connection[i], connection_len[i], "keep-alive"))
            keep_alive = 1;
    }
    /* After a message that closes the connection llhttp refuses any further data (but
     * skips empty lines); the scanner would have to copy that rule, so it leaves such a
     * request to llhttp, which is rare per request: one per connection. */
    if (!keep_alive)
        DECLINE();
    target = PyBytes_FromStringAndSize(t, q - t);
    if (target == NULL)
        goto done;
    PyObject *version = minor ? st->http11 : st->http10;
    cgi = cgi_variables(st, method, t, q - t, version, headers);
    if (cgi == NULL)
        goto done;
    if (content_length >= 0)
        result = Py_BuildValue("(nOOOOOLO)", (Py_ssize_t)(p - base), method, target, version,
                               headers, Py_True, content_length, cgi);
    else
        result = Py_BuildValue("(nOOOOOOO)", (Py_ssize_t)(p - base), method, target, version,
                               headers, Py_True, Py_None, cgi);
done:
    Py_XDECREF(cgi);
    Py_XDECREF(target);
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef head_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, offset, max_request_line, max_header_bytes, max_headers, max_body)\n--\n\n"
     "Read a complete, plain HTTP/1.x request head starting at offset: (end, method, "
     "target, version, headers, keep_alive, content_length), or None when the head is "
     "incomplete or anything about it needs the full reader."},
    {NULL, NULL, 0, NULL},
};

static int
head_exec(PyObject *module)
{
    head_state *st = state_of(module);
    for (size_t i = 0; i < N_METHODS; i++) {
        st->methods[i] = PyUnicode_InternFromString(METHODS[i]);
        if (st->methods[i] == NULL)
            return -1;
    }
    st->http11 = PyUnicode_InternFromString("HTTP/1.1");
    st->http10 = PyUnicode_InternFromString("HTTP/1.0");
    if (st->http11 == NULL || st->http10 == NULL)
        return -1;
    st->cgi_keys = PyDict_New();
    st->empty = PyUnicode_InternFromString("");
    st->key_method = PyUnicode_InternFromString("REQUEST_METHOD");
    st->key_path = PyUnicode_InternFromString("PATH_INFO");
    st->key_query = PyUnicode_InternFromString("QUERY_STRING");
    st->key_raw_uri = PyUnicode_InternFromString("RAW_URI");
    st->key_request_uri = PyUnicode_InternFromString("REQUEST_URI");
    st->key_protocol = PyUnicode_InternFromString("SERVER_PROTOCOL");
    st->key_cookie = PyUnicode_InternFromString("HTTP_COOKIE");
    if (!st->cgi_keys || !st->empty || !st->key_method || !st->key_path || !st->key_query ||
            !st->key_raw_uri || !st->key_request_uri || !st->key_protocol || !st->key_cookie)
        return -1;
    return 0;
}

static int
head_traverse(PyObject *module, visitproc visit, void *arg)
{
    return 0;   /* only str and bytes objects, which cannot form cycles */
}

static int
head_clear(PyObject *module)
{
    head_state *st = state_of(module);
    for (size_t i = 0; i < N_METHODS; i++)
        Py_CLEAR(st->methods[i]);
    Py_CLEAR(st->http11);
    Py_CLEAR(st->http10);
    Py_CLEAR(st->cgi_keys);
    Py_CLEAR(st->empty);
    Py_CLEAR(st->key_method);
    Py_CLEAR(st->key_path);
    Py_CLEAR(st->key_query);
    Py_CLEAR(st->key_raw_uri);
    Py_CLEAR(st->key_request_uri);
    Py_CLEAR(st->key_protocol);
    Py_CLEAR(st->key_cookie);
    return 0;
}

static void
head_free(void *module)
{
    head_clear((PyObject *)module);
}

static PyModuleDef_Slot head_slots[] = {
    {Py_mod_exec, head_exec},
    {0, NULL},
};

static struct PyModuleDef head_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "loop._protocols._http_head",
    .m_doc = "The common HTTP/1.x request head, read in C; see RequestReader.",
    .m_size = sizeof(head_state),
    .m_methods = head_methods,
    .m_slots = head_slots,
    .m_traverse = head_traverse,
    .m_clear = head_clear,
    .m_free = head_free,
};

PyMODINIT_FUNC
PyInit__http_head(void)
{
    fill_tables();
    return PyModuleDef_Init(&head_module);
}
