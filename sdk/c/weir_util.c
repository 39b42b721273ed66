/*
 * weir_util.c: the parts of the C SDK that do not touch the host: buffers,
 * integer text, Rust-compatible parsing and trimming, and JSON (sdk/ENCODING.md).
 */
#include <stdlib.h>
#include <string.h>

#include "weir.h"

/* ---------------------------------------------------------------- buffers */

weir_bytes weir_str(const char *s) {
    return (weir_bytes){(const uint8_t *)s, strlen(s)};
}

static void buf_reserve(weir_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data) abort();
    b->data = data;
    b->cap = cap;
}

void weir_buf_append(weir_buf *b, const void *data, size_t len) {
    if (len == 0) return;
    buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void buf_byte(weir_buf *b, uint8_t c) {
    buf_reserve(b, 1);
    b->data[b->len++] = c;
}

void weir_buf_free(weir_buf *b) {
    free(b->data);
    *b = (weir_buf){0};
}

weir_bytes weir_buf_bytes(const weir_buf *b) {
    /* A non-NULL pointer even when empty: an empty buffer is an empty key, not none. */
    return (weir_bytes){b->data ? b->data : (const uint8_t *)"", b->len};
}

/* ---------------------------------------------------------------- integers */

/* The digits of `v` into `buf`, NUL-terminated; their count. */
static size_t utoa(char *buf, uint64_t v) {
    char tmp[WEIR_INT_BUF];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return n;
}

weir_bytes weir_utoa(char buf[WEIR_INT_BUF], uint64_t v) {
    return (weir_bytes){(const uint8_t *)buf, utoa(buf, v)};
}

weir_bytes weir_itoa(char buf[WEIR_INT_BUF], int64_t v) {
    if (v >= 0) return weir_utoa(buf, (uint64_t)v);
    buf[0] = '-';
    return (weir_bytes){(const uint8_t *)buf, utoa(buf + 1, 0 - (uint64_t)v) + 1};
}

/* Rust's `i64::from_str`, with its error kinds (for the config messages). */
typedef enum { PARSE_OK, PARSE_EMPTY, PARSE_INVALID, PARSE_TOO_LARGE, PARSE_TOO_SMALL } parse_result;

static parse_result parse_i64(weir_bytes text, int64_t *out) {
    const uint8_t *p = text.ptr, *end = text.ptr + text.len;
    if (p == end) return PARSE_EMPTY;
    bool negative = false;
    if (text.len == 1 && (*p == '+' || *p == '-')) return PARSE_INVALID;
    if (*p == '+') {
        p++;
    } else if (*p == '-') {
        negative = true;
        p++;
    }
    /* Accumulate the magnitude in u64; the limit is 2^63 - 1, or 2^63 if negative. */
    uint64_t limit = negative ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1;
    uint64_t n = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return PARSE_INVALID;
        uint64_t d = (uint64_t)(*p - '0');
        if (n > (limit - d) / 10) return negative ? PARSE_TOO_SMALL : PARSE_TOO_LARGE;
        n = n * 10 + d;
    }
    *out = negative ? (int64_t)(0 - n) : (int64_t)n;
    return PARSE_OK;
}

bool weir_parse_i64(weir_bytes text, int64_t *out) {
    return parse_i64(text, out) == PARSE_OK;
}

const char *weir__parse_error(weir_bytes text) {
    int64_t ignored;
    switch (parse_i64(text, &ignored)) {
    case PARSE_EMPTY: return "cannot parse integer from empty string";
    case PARSE_INVALID: return "invalid digit found in string";
    case PARSE_TOO_LARGE: return "number too large to fit in target type";
    case PARSE_TOO_SMALL: return "number too small to fit in target type";
    default: return NULL;
    }
}

/* ---------------------------------------------------------------- UTF-8 */

/* Decodes the UTF-8 character at `p` (valid UTF-8 assumed); returns its length. */
static size_t utf8_decode(const uint8_t *p, const uint8_t *end, uint32_t *cp) {
    uint8_t c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0 && end - p >= 2) {
        *cp = ((uint32_t)(c & 0x1F) << 6) | (p[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0 && end - p >= 3) {
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        return 3;
    }
    if (end - p >= 4) {
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
              ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
        return 4;
    }
    *cp = 0xFFFD;
    return 1;
}

bool weir_is_utf8(weir_bytes text) {
    const uint8_t *p = text.ptr, *end = text.ptr + text.len;
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        uint32_t min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            min = 0x10000;
        } else {
            return false;
        }
        if ((size_t)(end - p) < n) return false;
        for (size_t i = 1; i < n; i++)
            if ((p[i] & 0xC0) != 0x80) return false;
        uint32_t cp;
        utf8_decode(p, end, &cp);
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        p += n;
    }
    return true;
}

/* Unicode White_Space, as Rust's `char::is_whitespace`. */
static bool is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

weir_bytes weir_trim(weir_bytes text) {
    const uint8_t *p = text.ptr, *end = text.ptr + text.len;
    while (p < end) {
        uint32_t cp;
        size_t n = utf8_decode(p, end, &cp);
        if (!is_white_space(cp)) break;
        p += n;
    }
    while (end > p) {
        /* Step back to the start of the last character. */
        const uint8_t *q = end - 1;
        while (q > p && (*q & 0xC0) == 0x80) q--;
        uint32_t cp;
        utf8_decode(q, end, &cp);
        if (!is_white_space(cp)) break;
        end = q;
    }
    return (weir_bytes){p, (size_t)(end - p)};
}

/* Characters Rust's `{:?}` writes as `\u{..}` beyond ASCII: the C1 controls
 * and the common invisible and combining ones (an approximation of Rust's
 * is_printable / grapheme-extend tables). */
static bool debug_escaped(uint32_t c) {
    return (c >= 0x80 && c <= 0x9F) || c == 0xAD || (c >= 0x300 && c <= 0x36F) ||
           (c >= 0x200B && c <= 0x200F) || (c >= 0x2028 && c <= 0x202E) ||
           (c >= 0x2060 && c <= 0x206F) || (c >= 0xFE00 && c <= 0xFE0F) || c == 0xFEFF;
}

/* Appends `text` as Rust's `{:?}` writes a string (for config messages): in
 * quotes, with `"`, `\` and control characters escaped. */
void weir__debug_str(weir_buf *b, weir_bytes text) {
    static const char hex[] = "0123456789abcdef";
    buf_byte(b, '"');
    for (size_t i = 0; i < text.len; i++) {
        uint8_t c = text.ptr[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t n = utf8_decode(text.ptr + i, text.ptr + text.len, &cp);
            if (debug_escaped(cp)) {
                char digits[8];
                int k = 0;
                do {
                    digits[k++] = hex[cp & 15];
                    cp >>= 4;
                } while (cp);
                weir_buf_append(b, "\\u{", 3);
                while (k) buf_byte(b, (uint8_t)digits[--k]);
                buf_byte(b, '}');
            } else {
                weir_buf_append(b, text.ptr + i, n);
            }
            i += n - 1;
            continue;
        }
        switch (c) {
        case '"': weir_buf_append(b, "\\\"", 2); break;
        case '\\': weir_buf_append(b, "\\\\", 2); break;
        case '\n': weir_buf_append(b, "\\n", 2); break;
        case '\r': weir_buf_append(b, "\\r", 2); break;
        case '\t': weir_buf_append(b, "\\t", 2); break;
        case 0: weir_buf_append(b, "\\0", 2); break;
        default:
            if (c < 0x20 || c == 0x7F) {
                weir_buf_append(b, "\\u{", 3);
                if (c >= 0x10) buf_byte(b, (uint8_t)hex[c >> 4]);
                buf_byte(b, (uint8_t)hex[c & 15]);
                buf_byte(b, '}');
            } else {
                buf_byte(b, c);
            }
        }
    }
    buf_byte(b, '"');
}

/* ---------------------------------------------------------------- JSON writer */

/* A comma is needed unless the buffer is empty or its last byte opens a
 * container or ends a field name: no extra writer state to carry around. */
static void json_sep(weir_buf *b) {
    if (b->len == 0) return;
    uint8_t last = b->data[b->len - 1];
    if (last != '[' && last != '{' && last != ':') buf_byte(b, ',');
}

void weir_json_i64(weir_buf *b, int64_t v) {
    char text[WEIR_INT_BUF];
    json_sep(b);
    weir_bytes t = weir_itoa(text, v);
    weir_buf_append(b, t.ptr, t.len);
}

void weir_json_u64(weir_buf *b, uint64_t v) {
    char text[WEIR_INT_BUF];
    json_sep(b);
    weir_bytes t = weir_utoa(text, v);
    weir_buf_append(b, t.ptr, t.len);
}

void weir_json_bool(weir_buf *b, bool v) {
    json_sep(b);
    if (v)
        weir_buf_append(b, "true", 4);
    else
        weir_buf_append(b, "false", 5);
}

void weir_json_null(weir_buf *b) {
    json_sep(b);
    weir_buf_append(b, "null", 4);
}

static void json_string_body(weir_buf *b, weir_bytes s) {
    static const char hex[] = "0123456789abcdef";
    buf_byte(b, '"');
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.ptr[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        weir_buf_append(b, s.ptr + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': weir_buf_append(b, "\\\"", 2); break;
        case '\\': weir_buf_append(b, "\\\\", 2); break;
        case '\b': weir_buf_append(b, "\\b", 2); break;
        case '\f': weir_buf_append(b, "\\f", 2); break;
        case '\n': weir_buf_append(b, "\\n", 2); break;
        case '\r': weir_buf_append(b, "\\r", 2); break;
        case '\t': weir_buf_append(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            weir_buf_append(b, u, 6);
        }
        }
    }
    weir_buf_append(b, s.ptr + run, s.len - run);
    buf_byte(b, '"');
}

void weir_json_string(weir_buf *b, weir_bytes utf8) {
    json_sep(b);
    json_string_body(b, utf8);
}

void weir_json_object_begin(weir_buf *b) {
    json_sep(b);
    buf_byte(b, '{');
}

void weir_json_object_end(weir_buf *b) { buf_byte(b, '}'); }

void weir_json_array_begin(weir_buf *b) {
    json_sep(b);
    buf_byte(b, '[');
}

void weir_json_array_end(weir_buf *b) { buf_byte(b, ']'); }

void weir_json_key(weir_buf *b, const char *name) {
    json_sep(b);
    json_string_body(b, weir_str(name));
    buf_byte(b, ':');
}

/* ---------------------------------------------------------------- JSON reader */

typedef struct {
    const uint8_t *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(cursor *c, uint32_t *out) {
    if (c->end - c->p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(c->p[i]);
        if (d < 0) return false;
        v = v * 16 + (uint32_t)d;
    }
    c->p += 4;
    *out = v;
    return true;
}

static void put_utf8(weir_buf *b, uint32_t cp) {
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | (cp >> 18));
        u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    weir_buf_append(b, u, n);
}

/* Reads a string at the cursor (on its `"`), appending its text to `out` if
 * given. Lone surrogates are refused, as serde_json does. */
static bool read_string(cursor *c, weir_buf *out) {
    if (c->p >= c->end || *c->p != '"') return false;
    c->p++;
    const uint8_t *run = c->p;
    while (c->p < c->end) {
        uint8_t ch = *c->p;
        if (ch == '"') {
            if (out) weir_buf_append(out, run, (size_t)(c->p - run));
            c->p++;
            return true;
        }
        if (ch < 0x20) return false;
        if (ch != '\\') {
            c->p++;
            continue;
        }
        if (out) weir_buf_append(out, run, (size_t)(c->p - run));
        c->p++;
        if (c->p >= c->end) return false;
        uint8_t e = *c->p++;
        uint8_t simple = 0;
        switch (e) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!read_hex4(c, &cp)) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') return false;
                c->p += 2;
                if (!read_hex4(c, &lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (out) put_utf8(out, cp);
            break;
        }
        default: return false;
        }
        if (simple && out) buf_byte(out, simple);
        run = c->p;
    }
    return false;
}

static bool skip_number(cursor *c) {
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p >= c->end) return false;
    if (*c->p == '0') {
        c->p++;
    } else if (*c->p >= '1' && *c->p <= '9') {
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    } else {
        return false;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        const uint8_t *digits = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
        if (c->p == digits) return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        const uint8_t *digits = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
        if (c->p == digits) return false;
    }
    return true;
}

static bool skip_literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

#define MAX_DEPTH 128

/* Skips one value at the cursor (after whitespace), validating it. */
static bool skip_value(cursor *c, int depth) {
    skip_ws(c);
    if (c->p >= c->end || depth > MAX_DEPTH) return false;
    switch (*c->p) {
    case '"': return read_string(c, NULL);
    case 't': return skip_literal(c, "true");
    case 'f': return skip_literal(c, "false");
    case 'n': return skip_literal(c, "null");
    case '[':
    case '{': {
        bool object = *c->p == '{';
        uint8_t close = object ? '}' : ']';
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return true;
        }
        for (;;) {
            if (object) {
                skip_ws(c);
                if (!read_string(c, NULL)) return false;
                skip_ws(c);
                if (c->p >= c->end || *c->p != ':') return false;
                c->p++;
            }
            if (!skip_value(c, depth + 1)) return false;
            skip_ws(c);
            if (c->p >= c->end) return false;
            if (*c->p == ',') {
                c->p++;
                continue;
            }
            if (*c->p != close) return false;
            c->p++;
            return true;
        }
    }
    default: return skip_number(c);
    }
}

bool weir_json_valid(weir_bytes json) {
    cursor c = {json.ptr, json.ptr + json.len};
    if (!skip_value(&c, 0)) return false;
    skip_ws(&c);
    return c.p == c.end;
}

/* The one value of `json` without surrounding whitespace, if valid. */
static bool whole_value(weir_bytes json, cursor *value) {
    cursor c = {json.ptr, json.ptr + json.len};
    skip_ws(&c);
    const uint8_t *start = c.p;
    if (!skip_value(&c, 0)) return false;
    const uint8_t *stop = c.p;
    skip_ws(&c);
    if (c.p != c.end) return false;
    *value = (cursor){start, stop};
    return true;
}

/* An integer JSON number: `-`? digits, no fraction or exponent. */
static bool read_integer(weir_bytes json, bool *negative, uint64_t *magnitude) {
    /* Fast path: the canonical form, `-`? and up to 18 digits without a leading zero. */
    const uint8_t *p = json.ptr, *end = json.ptr + json.len;
    *negative = p < end && *p == '-';
    p += *negative;
    if (p < end && end - p <= 18 && (*p != '0' || end - p == 1)) {
        uint64_t n = 0;
        const uint8_t *q = p;
        while (q < end && *q >= '0' && *q <= '9') n = n * 10 + (uint64_t)(*q++ - '0');
        if (q == end) {
            *magnitude = n;
            return true;
        }
    }
    cursor v;
    if (!whole_value(json, &v)) return false;
    p = v.p;
    *negative = p < v.end && *p == '-';
    if (*negative) p++;
    if (p >= v.end) return false;
    uint64_t n = 0;
    for (; p < v.end; p++) {
        if (*p < '0' || *p > '9') return false; /* a fraction, exponent or not a number */
        uint64_t d = (uint64_t)(*p - '0');
        if (n > (UINT64_MAX - d) / 10) return false;
        n = n * 10 + d;
    }
    *magnitude = n;
    return true;
}

bool weir_json_read_i64(weir_bytes json, int64_t *out) {
    bool negative;
    uint64_t n;
    if (!read_integer(json, &negative, &n)) return false;
    if (negative) {
        if (n > (uint64_t)1 << 63) return false;
        *out = (int64_t)(0 - n);
    } else {
        if (n > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)n;
    }
    return true;
}

bool weir_json_read_u64(weir_bytes json, uint64_t *out) {
    bool negative;
    uint64_t n;
    if (!read_integer(json, &negative, &n)) return false;
    if (negative && n != 0) return false;
    *out = n;
    return true;
}

bool weir_json_read_bool(weir_bytes json, bool *out) {
    cursor v;
    if (!whole_value(json, &v)) return false;
    size_t n = (size_t)(v.end - v.p);
    if (n == 4 && memcmp(v.p, "true", 4) == 0) {
        *out = true;
        return true;
    }
    if (n == 5 && memcmp(v.p, "false", 5) == 0) {
        *out = false;
        return true;
    }
    return false;
}

bool weir_json_read_string(weir_bytes json, weir_buf *out) {
    cursor v;
    if (!whole_value(json, &v) || *v.p != '"') return false;
    return read_string(&v, out);
}

bool weir_json_field(weir_bytes json, const char *name, weir_bytes *value) {
    cursor v;
    if (!whole_value(json, &v) || *v.p != '{') return false;
    v.p++;
    weir_buf field = {0};
    bool found = false;
    for (;;) {
        skip_ws(&v);
        if (*v.p == '}') break;
        field.len = 0;
        read_string(&v, &field); /* valid: checked by whole_value */
        skip_ws(&v);
        v.p++; /* ':' */
        skip_ws(&v);
        const uint8_t *start = v.p;
        skip_value(&v, 0);
        /* The last of duplicate fields wins, as in serde_json and JavaScript. */
        if (field.len == strlen(name) && memcmp(field.data, name, field.len) == 0) {
            *value = (weir_bytes){start, (size_t)(v.p - start)};
            found = true;
        }
        skip_ws(&v);
        if (*v.p == ',') v.p++;
    }
    weir_buf_free(&field);
    return found;
}

bool weir_json_next(weir_bytes json, size_t *at, weir_bytes *element) {
    cursor c = {json.ptr + *at, json.ptr + json.len};
    if (*at == 0) {
        /* The whole array is validated once, on the first call. */
        cursor v;
        if (!whole_value(json, &v) || *v.p != '[') return false;
        c.p = v.p + 1;
    }
    skip_ws(&c);
    if (c.p >= c.end || *c.p == ']') return false;
    if (*c.p == ',') {
        c.p++;
        skip_ws(&c);
    }
    const uint8_t *start = c.p;
    skip_value(&c, 0);
    *element = (weir_bytes){start, (size_t)(c.p - start)};
    *at = (size_t)(c.p - json.ptr);
    return true;
}

bool weir_json_next_field(weir_bytes json, size_t *at, weir_buf *name, weir_bytes *value) {
    cursor c = {json.ptr + *at, json.ptr + json.len};
    if (*at == 0) {
        /* The whole object is validated once, on the first call. */
        cursor v;
        if (!whole_value(json, &v) || *v.p != '{') return false;
        c.p = v.p + 1;
    }
    skip_ws(&c);
    if (c.p >= c.end || *c.p == '}') return false;
    if (*c.p == ',') {
        c.p++;
        skip_ws(&c);
    }
    name->len = 0;
    read_string(&c, name);
    skip_ws(&c);
    c.p++; /* ':' */
    skip_ws(&c);
    const uint8_t *start = c.p;
    skip_value(&c, 0);
    *value = (weir_bytes){start, (size_t)(c.p - start)};
    *at = (size_t)(c.p - json.ptr);
    return true;
}
