/*
 * weir.c: the C SDK's glue between the WIT exports (the bindings that
 * `wit-bindgen c` generates into operator.h at build time) and the operator
 * that WEIR_OPERATOR defines: flat batches turned into events and back, state
 * caches and timer changes flushed in one host call per state at the end of
 * every call.
 *
 * Ownership (wit-bindgen's C conventions): an export owns its arguments and
 * frees them; what it returns is freed by the generated post-return function,
 * which frees a list only if its length is > 0, so an empty list returned
 * here is always NULL. Lists an import returns are ours to free.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "weir.h"

/* From weir_util.c. */
const char *weir__parse_error(weir_bytes text);
void weir__debug_str(weir_buf *b, weir_bytes text);

typedef weir_operator_types_blobs_t blobs_t;
typedef exports_weir_operator_guest_batch_t batch_t;

static const weir_definition *const def = &weir_the_operator;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

/* Grows an array `*items` of `size`-byte items so it holds `need`. */
static void grow(void *items, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    *(void **)items = xrealloc(*(void **)items, c * size);
    *cap = c;
}

/* ---------------------------------------------------------------- messages */

/* The message of the last weir_bad_input / weir_fatal. */
static weir_buf message;
/* A fatal error the operator cannot see returned (a state value that did not
 * decode): it fails the current call whatever the callback returns. */
static weir_buf sticky;
static bool sticky_set;

/* A small printf: flags `-0+ `, width and precision (digits or `*`),
 * lengths hh h l ll z j t, conversions d i u x X o c s p %. Floating-point
 * conversions are not supported (they print `?`): this keeps libc's stdio,
 * and its size, out of every operator. */
static void vformat(weir_buf *b, const char *fmt, va_list ap) {
    static const char lower[] = "0123456789abcdef", upper[] = "0123456789ABCDEF";
    b->len = 0;
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            const char *run = p;
            while (p[1] && p[1] != '%') p++;
            weir_buf_append(b, run, (size_t)(p - run + 1));
            continue;
        }
        p++;
        bool left = false, zero = false, plus = false, space = false;
        for (;; p++) {
            if (*p == '-') left = true;
            else if (*p == '0') zero = true;
            else if (*p == '+') plus = true;
            else if (*p == ' ') space = true;
            else break;
        }
        int width = 0, precision = -1;
        if (*p == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = true;
                width = -width;
            }
            p++;
        } else {
            while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
        }
        if (*p == '.') {
            p++;
            precision = 0;
            if (*p == '*') {
                precision = va_arg(ap, int);
                p++;
            } else {
                while (*p >= '0' && *p <= '9') precision = precision * 10 + (*p++ - '0');
            }
        }
        int size = 0; /* 0: int, 1: long, 2: long long, 3: size_t, 4: intmax_t, 5: ptrdiff_t */
        if (*p == 'h') {
            p++;
            if (*p == 'h') p++;
        } else if (*p == 'l') {
            p++;
            size = 1;
            if (*p == 'l') {
                p++;
                size = 2;
            }
        } else if (*p == 'z') {
            p++;
            size = 3;
        } else if (*p == 'j') {
            p++;
            size = 4;
        } else if (*p == 't') {
            p++;
            size = 5;
        }
        char digits[72];
        const char *text = digits;
        size_t len = 0;
        const char *sign = "";
        char conv = *p;
        switch (conv) {
        case 'd':
        case 'i': {
            long long v = size == 0   ? va_arg(ap, int)
                          : size == 1 ? va_arg(ap, long)
                          : size == 3 ? (long long)va_arg(ap, ptrdiff_t)
                          : size == 4 ? (long long)va_arg(ap, intmax_t)
                          : size == 5 ? (long long)va_arg(ap, ptrdiff_t)
                                      : va_arg(ap, long long);
            unsigned long long m = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
            sign = v < 0 ? "-" : plus ? "+" : space ? " " : "";
            char *end = digits + sizeof digits, *q = end;
            do *--q = (char)('0' + m % 10); while (m /= 10);
            text = q;
            len = (size_t)(end - q);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'p': {
            unsigned long long v = conv == 'p'   ? (unsigned long long)(uintptr_t)va_arg(ap, void *)
                                   : size == 0 ? va_arg(ap, unsigned)
                                   : size == 1 ? va_arg(ap, unsigned long)
                                   : size == 3 ? va_arg(ap, size_t)
                                   : size == 4 ? (unsigned long long)va_arg(ap, uintmax_t)
                                   : size == 5 ? (unsigned long long)va_arg(ap, ptrdiff_t)
                                               : va_arg(ap, unsigned long long);
            unsigned base = conv == 'u' ? 10 : conv == 'o' ? 8 : 16;
            const char *set = conv == 'X' ? upper : lower;
            char *end = digits + sizeof digits, *q = end;
            do *--q = set[v % base]; while (v /= base);
            if (conv == 'p') sign = "0x";
            text = q;
            len = (size_t)(end - q);
            break;
        }
        case 'c':
            digits[0] = (char)va_arg(ap, int);
            len = 1;
            break;
        case 's':
            text = va_arg(ap, const char *);
            if (!text) text = "(null)";
            len = precision >= 0 ? strnlen(text, (size_t)precision) : strlen(text);
            precision = -1;
            break;
        case '%':
            digits[0] = '%';
            len = 1;
            break;
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
            (void)va_arg(ap, double);
            digits[0] = '?';
            len = 1;
            break;
        default: /* an unknown conversion: written as it is */
            weir_buf_append(b, "%", 1);
            if (!conv) return;
            weir_buf_append(b, p, 1);
            continue;
        }
        /* A number's precision: its least number of digits. */
        size_t zeros = conv != 's' && precision >= 0 && (size_t)precision > len
                           ? (size_t)precision - len : 0;
        size_t total = strlen(sign) + zeros + len;
        size_t pad = width > 0 && (size_t)width > total ? (size_t)width - total : 0;
        if (zero && !left && precision < 0 && conv != 's' && conv != 'c') {
            zeros += pad;
            pad = 0;
        }
        for (; !left && pad; pad--) weir_buf_append(b, " ", 1);
        weir_buf_append(b, sign, strlen(sign));
        for (; zeros; zeros--) weir_buf_append(b, "0", 1);
        weir_buf_append(b, text, len);
        for (; pad; pad--) weir_buf_append(b, " ", 1);
    }
}

weir_status weir_bad_input(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat(&message, fmt, ap);
    va_end(ap);
    return WEIR_BAD_INPUT;
}

weir_status weir_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat(&message, fmt, ap);
    va_end(ap);
    return WEIR_FATAL;
}

static void set_sticky(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_sticky(const char *fmt, ...) {
    if (sticky_set) return; /* the first one is the cause */
    va_list ap;
    va_start(ap, fmt);
    vformat(&sticky, fmt, ap);
    va_end(ap);
    sticky_set = true;
}

/* A string the generated code will free: a copy of `b`. */
static operator_string_t owned_string(const uint8_t *data, size_t len) {
    operator_string_t s = {NULL, 0};
    if (len > 0) {
        s.ptr = xmalloc(len);
        memcpy(s.ptr, data, len);
        s.len = len;
    }
    return s;
}

static operator_string_t owned_cstr(const char *text) {
    return owned_string((const uint8_t *)text, strlen(text));
}

void weir_log(weir_level level, const char *fmt, ...) {
    static weir_buf text;
    va_list ap;
    va_start(ap, fmt);
    vformat(&text, fmt, ap);
    va_end(ap);
    operator_string_t s = {text.data, text.len};
    weir_operator_logging_log((weir_operator_logging_level_t)level, &s);
}

/* ---------------------------------------------------------------- per-call memory */

/* Memory that lives until the current call ends: copies of keys and state
 * values, and lists the host returned that the SDK hands out views of. Blocks
 * are kept from call to call, so steady state allocates nothing. */
#define BLOCK_SIZE 65536
typedef struct block {
    struct block *next;
    size_t used;
    uint8_t data[BLOCK_SIZE];
} block;
static block *blocks, *current_block;
static void **deferred; /* freed when the call ends */
static size_t n_deferred, cap_deferred;

static void defer_free(void *p) {
    grow(&deferred, &cap_deferred, n_deferred + 1, sizeof(void *));
    deferred[n_deferred++] = p;
}

static void *call_alloc(size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (n > BLOCK_SIZE / 4) {
        void *p = xmalloc(n);
        defer_free(p);
        return p;
    }
    for (;;) {
        if (!current_block) {
            if (!blocks) {
                blocks = xmalloc(sizeof(block));
                blocks->next = NULL;
                blocks->used = 0;
            }
            current_block = blocks;
        }
        if (current_block->used + n <= BLOCK_SIZE) {
            void *p = current_block->data + current_block->used;
            current_block->used += n;
            return p;
        }
        if (!current_block->next) {
            block *b = xmalloc(sizeof(block));
            b->next = NULL;
            b->used = 0;
            current_block->next = b;
        }
        current_block = current_block->next;
        current_block->used = 0;
    }
}

/* The input batch of the current call: its bytes need no copying. */
static const uint8_t *input_data;
static size_t input_len;

static const uint8_t *call_copy(const uint8_t *p, size_t n) {
    if (n == 0) return (const uint8_t *)"";
    if (p >= input_data && p + n <= input_data + input_len) return p;
    uint8_t *q = call_alloc(n);
    memcpy(q, p, n);
    return q;
}

static void call_memory_reset(void) {
    for (size_t i = 0; i < n_deferred; i++) free(deferred[i]);
    n_deferred = 0;
    if (blocks) blocks->used = 0;
    current_block = blocks;
    input_data = NULL;
    input_len = 0;
}

/* Keeps a list the host returned until the call ends (if it was allocated). */
static void keep_list(void *ptr, size_t len) {
    if (len > 0) defer_free(ptr);
}

/* ---------------------------------------------------------------- flat blobs */

/* Reusable blobs for arguments of host calls (borrowed by the call). */
typedef struct {
    weir_buf data;
    int32_t *lens;
    size_t n, cap;
} blobs_buf;

static void blobs_push(blobs_buf *b, const uint8_t *p, int32_t len) {
    grow(&b->lens, &b->cap, b->n + 1, sizeof(int32_t));
    b->lens[b->n++] = len;
    if (len > 0) weir_buf_append(&b->data, p, (size_t)len);
}

static blobs_t blobs_view(blobs_buf *b) {
    return (blobs_t){{b->data.data, b->data.len}, {b->lens, b->n}};
}

static void blobs_clear(blobs_buf *b) {
    b->data.len = 0;
    b->n = 0;
}

/* Splits blobs from the host into views; false if malformed. */
static bool split_blobs(const blobs_t *b, weir_bytes *out) {
    size_t at = 0;
    for (size_t i = 0; i < b->lens.len; i++) {
        int32_t len = b->lens.ptr[i];
        if (len < 0) {
            out[i] = WEIR_NO_KEY;
            continue;
        }
        if ((size_t)len > b->data.len - at) return false;
        out[i] = (weir_bytes){b->data.len ? b->data.ptr + at : (const uint8_t *)"", (size_t)len};
        at += (size_t)len;
    }
    return true;
}

/* Views of blobs the host returned, valid until the call ends; false if malformed. */
static bool host_blobs(blobs_t *b, weir_bytes **out) {
    *out = call_alloc(b->lens.len * sizeof(weir_bytes) + 1);
    bool ok = split_blobs(b, *out);
    keep_list(b->data.ptr, b->data.len);
    operator_list_s32_free(&b->lens);
    return ok;
}

/* ---------------------------------------------------------------- the cache */

/* The entries one call touches of one state: (key, user key) -> value. */
typedef struct {
    const uint8_t *key, *map_key, *value; /* value: JSON bytes */
    uint32_t key_len, map_key_len;
    int32_t value_len; /* -1: absent */
    uint32_t hash, pos; /* pos: where in the table */
    bool known;         /* false: not fetched yet */
    bool dirty;         /* written: to send at the end of the call */
} slot;

typedef struct {
    slot *slots;
    size_t n, cap;
    uint32_t *table; /* slot index + 1, 0: empty */
    size_t table_size;
    uint32_t *pending; /* slots to fetch */
    size_t n_pending, cap_pending;
} cache;

static uint32_t hash_bytes(const uint8_t *p, size_t n, uint64_t h) {
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    h ^= n * k;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * k;
    h ^= h >> 32;
    return (uint32_t)h;
}

static uint32_t hash_pair(weir_bytes key, weir_bytes map_key) {
    uint32_t h = hash_bytes(key.ptr, key.len, 0x243F6A8885A308D3ull);
    return hash_bytes(map_key.ptr, map_key.len, h);
}

static bool slot_is(const slot *s, uint32_t hash, weir_bytes key, weir_bytes map_key) {
    return s->hash == hash && s->key_len == key.len && s->map_key_len == map_key.len &&
           memcmp(s->key, key.ptr, key.len) == 0 &&
           (map_key.len == 0 || memcmp(s->map_key, map_key.ptr, map_key.len) == 0);
}

static void table_place(cache *c, uint32_t i) {
    size_t mask = c->table_size - 1;
    size_t pos = c->slots[i].hash & mask;
    while (c->table[pos]) pos = (pos + 1) & mask;
    c->table[pos] = i + 1;
    c->slots[i].pos = (uint32_t)pos;
}

static long cache_find(cache *c, uint32_t hash, weir_bytes key, weir_bytes map_key) {
    if (!c->table_size) return -1;
    size_t mask = c->table_size - 1;
    for (size_t pos = hash & mask; c->table[pos]; pos = (pos + 1) & mask) {
        uint32_t i = c->table[pos] - 1;
        if (slot_is(&c->slots[i], hash, key, map_key)) return i;
    }
    return -1;
}

/* The slot of (key, map_key), added (unknown) if new. */
static uint32_t cache_slot(cache *c, weir_bytes key, weir_bytes map_key, bool *added) {
    uint32_t hash = hash_pair(key, map_key);
    long found = cache_find(c, hash, key, map_key);
    if (found >= 0) {
        *added = false;
        return (uint32_t)found;
    }
    *added = true;
    grow(&c->slots, &c->cap, c->n + 1, sizeof(slot));
    uint32_t i = (uint32_t)c->n++;
    c->slots[i] = (slot){
        .key = call_copy(key.ptr, key.len),
        .key_len = (uint32_t)key.len,
        .map_key = call_copy(map_key.ptr, map_key.len),
        .map_key_len = (uint32_t)map_key.len,
        .value_len = -1,
        .hash = hash,
    };
    if (c->n * 2 > c->table_size) {
        size_t size = c->table_size ? c->table_size * 2 : 64;
        while (c->n * 2 > size) size *= 2;
        free(c->table);
        c->table = calloc(size, sizeof(uint32_t));
        if (!c->table) abort();
        c->table_size = size;
        for (uint32_t j = 0; j < c->n; j++) table_place(c, j);
    } else {
        table_place(c, i);
    }
    return i;
}

static void cache_want(cache *c, weir_bytes key, weir_bytes map_key) {
    bool added;
    uint32_t i = cache_slot(c, key, map_key, &added);
    if (added) {
        grow(&c->pending, &c->cap_pending, c->n_pending + 1, sizeof(uint32_t));
        c->pending[c->n_pending++] = i;
    }
}

/* Writes `value` (NULL: removed) into a slot; sent when the call ends. */
static void slot_write(slot *s, const weir_bytes *value) {
    s->known = true;
    s->dirty = true;
    if (value) {
        s->value = call_copy(value->ptr, value->len);
        s->value_len = (int32_t)value->len;
    } else {
        s->value_len = -1;
    }
}

static void cache_write(cache *c, weir_bytes key, weir_bytes map_key, const weir_bytes *value) {
    bool added;
    uint32_t at = cache_slot(c, key, map_key, &added); /* may move c->slots */
    slot_write(&c->slots[at], value);
}

/* Forgets every entry, keeping the memory. */
static void cache_clear(cache *c) {
    for (size_t i = 0; i < c->n; i++) c->table[c->slots[i].pos] = 0;
    c->n = 0;
    c->n_pending = 0;
}

/* ---------------------------------------------------------------- states */

struct weir_value_state {
    char *name;
    weir_operator_state_own_value_state_t handle;
    cache c;
    bool prefetched; /* this call's keys were fetched */
    /* After the prefetch: the slot of each key of the call (NO_SLOT: none),
     * so that the current event's own key is found without hashing. */
    uint32_t *positions;
    size_t cap_positions;
};

#define NO_SLOT UINT32_MAX

struct weir_map_state {
    char *name;
    weir_operator_state_own_map_state_t handle;
    cache c;
};

struct weir_list_state {
    char *name;
    weir_operator_state_own_list_state_t handle;
    blobs_buf keys, values; /* buffered appends */
};

typedef struct {
    weir_state_kind kind;
    void *state;
} opened_state;
static opened_state *opened;
static size_t n_opened, cap_opened;

/* The keys of the current call (events' or timers'), for value state
 * prefetching, and the position of the event or timer being handled. */
static const weir_bytes *call_keys;
static size_t n_call_keys;
static size_t current_at = SIZE_MAX;

static blobs_buf req_keys, req_map_keys, req_values;

static const char *kind_name(weir_state_kind kind) {
    return kind == WEIR_VALUE ? "Value" : kind == WEIR_MAP ? "Map" : "List";
}

static bool check_declared(const char *name, weir_state_kind kind) {
    for (size_t i = 0; i < WEIR_MAX_STATES && def->states[i].name; i++) {
        if (strcmp(def->states[i].name, name) != 0) continue;
        if (def->states[i].kind != kind) {
            weir_fatal("state `%s` is declared as %s state, not %s", name,
                       kind_name(def->states[i].kind), kind_name(kind));
            return false;
        }
        return true;
    }
    weir_fatal("state `%s` is not declared in the operator's states", name);
    return false;
}

static char *copy_cstr(const char *s) {
    size_t n = strlen(s);
    char *p = xmalloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

static void remember(weir_state_kind kind, void *state) {
    grow(&opened, &cap_opened, n_opened + 1, sizeof(opened_state));
    opened[n_opened++] = (opened_state){kind, state};
}

/* The handle on state `name` opened already, if any: opening a state
 * again gives the same handle, so that writes through one are seen
 * through the other (one cache). The kind was checked by check_declared. */
static void *opened_already(const char *name) {
    for (size_t i = 0; i < n_opened; i++) {
        const char *n = opened[i].kind == WEIR_VALUE ? ((weir_value_state *)opened[i].state)->name
                        : opened[i].kind == WEIR_MAP ? ((weir_map_state *)opened[i].state)->name
                                                     : ((weir_list_state *)opened[i].state)->name;
        if (strcmp(n, name) == 0) return opened[i].state;
    }
    return NULL;
}

static bool open_failed(operator_string_t *err) {
    weir_fatal("%.*s", (int)err->len, (const char *)err->ptr);
    operator_string_free(err);
    return false;
}

weir_value_state *weir_value_state_open(const char *name) {
    if (!check_declared(name, WEIR_VALUE)) return NULL;
    weir_value_state *already = opened_already(name);
    if (already) return already;
    operator_string_t n = {(uint8_t *)name, strlen(name)}, err;
    weir_operator_state_own_value_state_t handle;
    if (!weir_operator_state_static_value_state_open(&n, &handle, &err)) {
        open_failed(&err);
        return NULL;
    }
    weir_value_state *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->name = copy_cstr(name);
    s->handle = handle;
    remember(WEIR_VALUE, s);
    return s;
}

weir_map_state *weir_map_state_open(const char *name) {
    if (!check_declared(name, WEIR_MAP)) return NULL;
    weir_map_state *already = opened_already(name);
    if (already) return already;
    operator_string_t n = {(uint8_t *)name, strlen(name)}, err;
    weir_operator_state_own_map_state_t handle;
    if (!weir_operator_state_static_map_state_open(&n, &handle, &err)) {
        open_failed(&err);
        return NULL;
    }
    weir_map_state *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->name = copy_cstr(name);
    m->handle = handle;
    remember(WEIR_MAP, m);
    return m;
}

weir_list_state *weir_list_state_open(const char *name) {
    if (!check_declared(name, WEIR_LIST)) return NULL;
    weir_list_state *already = opened_already(name);
    if (already) return already;
    operator_string_t n = {(uint8_t *)name, strlen(name)}, err;
    weir_operator_state_own_list_state_t handle;
    if (!weir_operator_state_static_list_state_open(&n, &handle, &err)) {
        open_failed(&err);
        return NULL;
    }
    weir_list_state *l = calloc(1, sizeof *l);
    if (!l) abort();
    l->name = copy_cstr(name);
    l->handle = handle;
    remember(WEIR_LIST, l);
    return l;
}

/* Fetches the pending entries of a value (map == NULL) or map state in one call. */
static void fetch_pending(cache *c, const char *name, weir_operator_state_own_value_state_t *value,
                          weir_operator_state_own_map_state_t *map) {
    blobs_clear(&req_keys);
    blobs_clear(&req_map_keys);
    size_t n = 0;
    for (size_t j = 0; j < c->n_pending; j++) {
        slot *s = &c->slots[c->pending[j]];
        if (s->known) continue; /* written since it was announced */
        c->pending[n++] = c->pending[j];
        blobs_push(&req_keys, s->key, (int32_t)s->key_len);
        if (map) blobs_push(&req_map_keys, s->map_key, (int32_t)s->map_key_len);
    }
    c->n_pending = 0;
    if (n == 0) return;
    blobs_t keys = blobs_view(&req_keys), ret;
    if (map) {
        blobs_t map_keys = blobs_view(&req_map_keys);
        weir_operator_state_method_map_state_get_many(
            weir_operator_state_borrow_map_state(*map), &keys, &map_keys, &ret);
    } else {
        weir_operator_state_method_value_state_get_many(
            weir_operator_state_borrow_value_state(*value), &keys, &ret);
    }
    weir_bytes *values;
    bool ok = host_blobs(&ret, &values) && ret.lens.len == n;
    if (!ok) {
        set_sticky("state `%s`: malformed blobs from the host", name);
        n = 0;
    }
    for (size_t j = 0; j < n; j++) {
        slot *s = &c->slots[c->pending[j]];
        s->known = true;
        if (values[j].ptr) {
            s->value = values[j].ptr;
            s->value_len = (int32_t)values[j].len;
        }
    }
}

static const weir_bytes NO_MAP_KEY = {(const uint8_t *)"", 0};

/* The slot of `key` in a value state's cache, added (unknown) if new. */
static uint32_t value_slot(weir_value_state *s, weir_bytes key, bool *added) {
    if (s->prefetched && current_at < n_call_keys && key.ptr == call_keys[current_at].ptr &&
        key.len == call_keys[current_at].len && s->positions[current_at] != NO_SLOT) {
        *added = false;
        return s->positions[current_at];
    }
    return cache_slot(&s->c, key, NO_MAP_KEY, added);
}

bool weir_value_get(weir_value_state *s, weir_bytes key, weir_bytes *json) {
    if (!s->prefetched) {
        /* The first read of a call fetches every key of the call at once. */
        s->prefetched = true;
        grow(&s->positions, &s->cap_positions, n_call_keys, sizeof(uint32_t));
        for (size_t i = 0; i < n_call_keys; i++) {
            s->positions[i] = NO_SLOT;
            if (!call_keys[i].ptr) continue;
            bool added;
            uint32_t at = cache_slot(&s->c, call_keys[i], NO_MAP_KEY, &added);
            s->positions[i] = at;
            if (added && !s->c.slots[at].known) {
                grow(&s->c.pending, &s->c.cap_pending, s->c.n_pending + 1, sizeof(uint32_t));
                s->c.pending[s->c.n_pending++] = at;
            }
        }
        fetch_pending(&s->c, s->name, &s->handle, NULL);
    }
    bool added;
    uint32_t at = value_slot(s, key, &added);
    if (!s->c.slots[at].known) {
        if (added) {
            grow(&s->c.pending, &s->c.cap_pending, s->c.n_pending + 1, sizeof(uint32_t));
            s->c.pending[s->c.n_pending++] = at;
        }
        fetch_pending(&s->c, s->name, &s->handle, NULL);
    }
    const slot *sl = &s->c.slots[at];
    if (sl->value_len < 0) return false;
    *json = (weir_bytes){sl->value, (size_t)sl->value_len};
    return true;
}

static void value_write(weir_value_state *s, weir_bytes key, const weir_bytes *json) {
    bool added;
    uint32_t at = value_slot(s, key, &added); /* may move s->c.slots */
    slot_write(&s->c.slots[at], json);
}

void weir_value_put(weir_value_state *s, weir_bytes key, weir_bytes json) {
    value_write(s, key, &json);
}

void weir_value_remove(weir_value_state *s, weir_bytes key) { value_write(s, key, NULL); }

static void undecodable(const char *state, const char *type) {
    set_sticky("state `%s` holds a value that does not decode as this type: not %s", state,
               type);
}

bool weir_value_get_i64(weir_value_state *s, weir_bytes key, int64_t *out) {
    weir_bytes json;
    if (!weir_value_get(s, key, &json)) return false;
    if (weir_json_read_i64(json, out)) return true;
    undecodable(s->name, "a 64-bit integer");
    return false;
}

bool weir_value_get_u64(weir_value_state *s, weir_bytes key, uint64_t *out) {
    weir_bytes json;
    if (!weir_value_get(s, key, &json)) return false;
    if (weir_json_read_u64(json, out)) return true;
    undecodable(s->name, "an unsigned 64-bit integer");
    return false;
}

void weir_value_put_i64(weir_value_state *s, weir_bytes key, int64_t v) {
    char text[WEIR_INT_BUF];
    weir_value_put(s, key, weir_itoa(text, v));
}

void weir_value_put_u64(weir_value_state *s, weir_bytes key, uint64_t v) {
    char text[WEIR_INT_BUF];
    weir_value_put(s, key, weir_utoa(text, v));
}

static void flush_value(weir_value_state *s) {
    blobs_clear(&req_keys);
    blobs_clear(&req_values);
    for (size_t i = 0; i < s->c.n; i++) {
        slot *sl = &s->c.slots[i];
        if (!sl->dirty) continue;
        blobs_push(&req_keys, sl->key, (int32_t)sl->key_len);
        blobs_push(&req_values, sl->value, sl->value_len);
    }
    if (req_keys.n) {
        blobs_t keys = blobs_view(&req_keys), values = blobs_view(&req_values);
        weir_operator_state_method_value_state_put_many(
            weir_operator_state_borrow_value_state(s->handle), &keys, &values);
    }
    cache_clear(&s->c);
    s->prefetched = false;
}

void weir_map_prefetch(weir_map_state *m, weir_bytes key, weir_bytes map_key) {
    cache_want(&m->c, key, map_key);
}

bool weir_map_get(weir_map_state *m, weir_bytes key, weir_bytes map_key, weir_bytes *json) {
    if (m->c.n_pending) fetch_pending(&m->c, m->name, NULL, &m->handle);
    bool added;
    uint32_t at = cache_slot(&m->c, key, map_key, &added); /* may move m->c.slots */
    slot *sl = &m->c.slots[at];
    if (!sl->known) {
        grow(&m->c.pending, &m->c.cap_pending, 1, sizeof(uint32_t));
        m->c.pending[0] = (uint32_t)(sl - m->c.slots);
        m->c.n_pending = 1;
        fetch_pending(&m->c, m->name, NULL, &m->handle);
    }
    if (sl->value_len < 0) return false;
    *json = (weir_bytes){sl->value, (size_t)sl->value_len};
    return true;
}

void weir_map_put(weir_map_state *m, weir_bytes key, weir_bytes map_key, weir_bytes json) {
    cache_write(&m->c, key, map_key, &json);
}

void weir_map_remove(weir_map_state *m, weir_bytes key, weir_bytes map_key) {
    cache_write(&m->c, key, map_key, NULL);
}

bool weir_map_get_i64(weir_map_state *m, weir_bytes key, weir_bytes map_key, int64_t *out) {
    weir_bytes json;
    if (!weir_map_get(m, key, map_key, &json)) return false;
    if (weir_json_read_i64(json, out)) return true;
    undecodable(m->name, "a 64-bit integer");
    return false;
}

void weir_map_put_i64(weir_map_state *m, weir_bytes key, weir_bytes map_key, int64_t v) {
    char text[WEIR_INT_BUF];
    weir_map_put(m, key, map_key, weir_itoa(text, v));
}

static void flush_map(weir_map_state *m) {
    blobs_clear(&req_keys);
    blobs_clear(&req_map_keys);
    blobs_clear(&req_values);
    for (size_t i = 0; i < m->c.n; i++) {
        slot *sl = &m->c.slots[i];
        if (!sl->dirty) continue;
        blobs_push(&req_keys, sl->key, (int32_t)sl->key_len);
        blobs_push(&req_map_keys, sl->map_key, (int32_t)sl->map_key_len);
        blobs_push(&req_values, sl->value, sl->value_len);
    }
    if (req_keys.n) {
        blobs_t keys = blobs_view(&req_keys), map_keys = blobs_view(&req_map_keys),
                values = blobs_view(&req_values);
        weir_operator_state_method_map_state_put_many(
            weir_operator_state_borrow_map_state(m->handle), &keys, &map_keys, &values);
    }
    cache_clear(&m->c);
}

static operator_list_u8_t key_list(weir_bytes key) {
    return (operator_list_u8_t){(uint8_t *)key.ptr, key.len};
}

weir_map_entries weir_map_entries_of(weir_map_state *m, weir_bytes key) {
    flush_map(m);
    operator_list_u8_t k = key_list(key);
    weir_operator_state_tuple2_blobs_blobs_t ret;
    weir_operator_state_method_map_state_entries(weir_operator_state_borrow_map_state(m->handle),
                                                 &k, &ret);
    weir_bytes *map_keys, *values;
    size_t n = ret.f0.lens.len;
    bool ok = ret.f1.lens.len == n;
    ok = host_blobs(&ret.f0, &map_keys) && ok;
    ok = host_blobs(&ret.f1, &values) && ok;
    if (!ok) {
        set_sticky("state `%s`: malformed blobs from the host", m->name);
        n = 0;
    }
    return (weir_map_entries){map_keys, values, n};
}

void weir_map_clear(weir_map_state *m, weir_bytes key) {
    flush_map(m);
    operator_list_u8_t k = key_list(key);
    weir_operator_state_method_map_state_clear(weir_operator_state_borrow_map_state(m->handle),
                                               &k);
}

void weir_list_add(weir_list_state *l, weir_bytes key, weir_bytes json) {
    blobs_push(&l->keys, key.ptr, (int32_t)key.len);
    blobs_push(&l->values, json.ptr, (int32_t)json.len);
}

void weir_list_add_i64(weir_list_state *l, weir_bytes key, int64_t v) {
    char text[WEIR_INT_BUF];
    weir_list_add(l, key, weir_itoa(text, v));
}

static void flush_list(weir_list_state *l) {
    if (l->keys.n) {
        blobs_t keys = blobs_view(&l->keys), values = blobs_view(&l->values);
        weir_operator_state_method_list_state_add_many(
            weir_operator_state_borrow_list_state(l->handle), &keys, &values);
    }
    blobs_clear(&l->keys);
    blobs_clear(&l->values);
}

weir_list_values weir_list_get(weir_list_state *l, weir_bytes key) {
    flush_list(l);
    operator_list_u8_t k = key_list(key);
    blobs_t ret;
    weir_operator_state_method_list_state_get(weir_operator_state_borrow_list_state(l->handle),
                                              &k, &ret);
    size_t n = ret.lens.len;
    weir_bytes *values;
    if (!host_blobs(&ret, &values)) {
        set_sticky("state `%s`: malformed blobs from the host", l->name);
        n = 0;
    }
    return (weir_list_values){values, n};
}

void weir_list_update(weir_list_state *l, weir_bytes key, const weir_bytes *values, size_t count) {
    flush_list(l);
    blobs_clear(&req_values);
    for (size_t i = 0; i < count; i++)
        blobs_push(&req_values, values[i].ptr, (int32_t)values[i].len);
    operator_list_u8_t k = key_list(key);
    blobs_t v = blobs_view(&req_values);
    weir_operator_state_method_list_state_update(weir_operator_state_borrow_list_state(l->handle),
                                                 &k, &v);
}

void weir_list_clear(weir_list_state *l, weir_bytes key) { weir_list_update(l, key, NULL, 0); }

/* ---------------------------------------------------------------- timers */

typedef struct {
    weir_time_domain domain;
    bool register_it;
    const uint8_t *key;
    int32_t key_len; /* -1: none */
    int64_t timestamp;
} timer_op;
static timer_op *timer_ops;
static size_t n_timer_ops, cap_timer_ops;
static int64_t *req_times;
static size_t cap_req_times;

static void timer_change(weir_time_domain domain, bool register_it, weir_bytes key,
                         int64_t timestamp) {
    grow(&timer_ops, &cap_timer_ops, n_timer_ops + 1, sizeof(timer_op));
    timer_ops[n_timer_ops++] = (timer_op){
        domain,
        register_it,
        key.ptr ? call_copy(key.ptr, key.len) : NULL,
        key.ptr ? (int32_t)key.len : -1,
        timestamp,
    };
}

void weir_register_timer(weir_time_domain domain, weir_bytes key, int64_t timestamp) {
    timer_change(domain, true, key, timestamp);
}

void weir_delete_timer(weir_time_domain domain, weir_bytes key, int64_t timestamp) {
    timer_change(domain, false, key, timestamp);
}

/* Sends the timer changes, one host call per run of the same kind. */
static void flush_timers(void) {
    size_t i = 0;
    while (i < n_timer_ops) {
        timer_op first = timer_ops[i];
        blobs_clear(&req_keys);
        size_t n = 0;
        for (; i < n_timer_ops && timer_ops[i].domain == first.domain &&
               timer_ops[i].register_it == first.register_it;
             i++) {
            blobs_push(&req_keys, timer_ops[i].key, timer_ops[i].key_len);
            grow(&req_times, &cap_req_times, n + 1, sizeof(int64_t));
            req_times[n++] = timer_ops[i].timestamp;
        }
        blobs_t keys = blobs_view(&req_keys);
        operator_list_s64_t times = {req_times, n};
        weir_operator_timers_time_domain_t domain = (weir_operator_timers_time_domain_t)first.domain;
        if (first.register_it)
            weir_operator_timers_register_many(domain, &keys, &times);
        else
            weir_operator_timers_delete_many(domain, &keys, &times);
    }
    n_timer_ops = 0;
}

static bool watermark_known;
static int64_t watermark;

int64_t weir_watermark(void) {
    if (!watermark_known) {
        watermark = weir_operator_timers_current_watermark();
        watermark_known = true;
    }
    return watermark;
}

int64_t weir_processing_time(void) { return weir_operator_timers_processing_time(); }

/* Sends every buffered state write and timer change to the host. */
static void flush_all(void) {
    for (size_t i = 0; i < n_opened; i++) {
        switch (opened[i].kind) {
        case WEIR_VALUE: flush_value(opened[i].state); break;
        case WEIR_MAP: flush_map(opened[i].state); break;
        case WEIR_LIST: flush_list(opened[i].state); break;
        }
    }
    flush_timers();
}

/* ---------------------------------------------------------------- output */

struct weir_output {
    weir_buf data;
    int32_t *key_lens;
    uint32_t *value_lens;
    int64_t *timestamps;
    size_t n, cap;
    size_t hint;      /* expected events, for the first allocation */
    size_t data_hint; /* expected bytes */
};

void weir_emit(weir_output *out, weir_bytes key, weir_bytes value, int64_t timestamp) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : (out->hint ? out->hint : 16);
        out->key_lens = xrealloc(out->key_lens, cap * sizeof(int32_t));
        out->value_lens = xrealloc(out->value_lens, cap * sizeof(uint32_t));
        out->timestamps = xrealloc(out->timestamps, cap * sizeof(int64_t));
        out->cap = cap;
        if (!out->data.cap && out->data_hint) {
            out->data.data = xmalloc(out->data_hint);
            out->data.cap = out->data_hint;
        }
    }
    if (key.ptr) {
        weir_buf_append(&out->data, key.ptr, key.len);
        out->key_lens[out->n] = (int32_t)key.len;
    } else {
        out->key_lens[out->n] = -1;
    }
    weir_buf_append(&out->data, value.ptr, value.len);
    out->value_lens[out->n] = (uint32_t)value.len;
    out->timestamps[out->n] = timestamp;
    out->n++;
}

void weir_forward(weir_output *out, const weir_event *event) {
    weir_emit(out, event->key, event->value, event->timestamp);
}

size_t weir_output_len(const weir_output *out) { return out->n; }

/* Hands the output over as a batch (the post-return frees it). */
static batch_t take_output(weir_output *out) {
    batch_t b = {{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}};
    if (out->data.len) {
        b.data = (operator_list_u8_t){out->data.data, out->data.len};
    } else {
        free(out->data.data);
    }
    if (out->n) {
        b.key_lens = (operator_list_s32_t){out->key_lens, out->n};
        b.value_lens = (operator_list_u32_t){out->value_lens, out->n};
        b.timestamps = (operator_list_s64_t){out->timestamps, out->n};
    } else {
        free(out->key_lens);
        free(out->value_lens);
        free(out->timestamps);
    }
    *out = (weir_output){0};
    return b;
}

static void drop_output(weir_output *out) {
    batch_t b = take_output(out);
    exports_weir_operator_guest_batch_free(&b);
}

/* ---------------------------------------------------------------- config and task */

static weir_task_info task;
static char **config_names, **config_values;
static size_t n_config;

const weir_task_info *weir_task(void) { return &task; }

const char *weir_config(const char *name) {
    for (size_t i = 0; i < n_config; i++)
        if (strcmp(config_names[i], name) == 0) return config_values[i];
    return NULL;
}

size_t weir_config_count(void) { return n_config; }

void weir_config_at(size_t i, const char **name, const char **value) {
    *name = i < n_config ? config_names[i] : NULL;
    *value = i < n_config ? config_values[i] : NULL;
}

static weir_status config_i64(const char *name, const int64_t *fallback, int64_t *out) {
    const char *text = weir_config(name);
    if (!text) {
        if (fallback) {
            *out = *fallback;
            return WEIR_OK;
        }
        return weir_fatal("config `%s` is required", name);
    }
    weir_bytes raw = weir_str(text);
    weir_bytes trimmed = weir_trim(raw);
    if (weir_parse_i64(trimmed, out)) return WEIR_OK;
    weir_buf quoted = {0};
    weir__debug_str(&quoted, raw);
    weir_status s = weir_fatal("config `%s` = %.*s is not valid: %s", name, (int)quoted.len,
                               (const char *)quoted.data, weir__parse_error(trimmed));
    weir_buf_free(&quoted);
    return s;
}

weir_status weir_config_require_i64(const char *name, int64_t *out) {
    return config_i64(name, NULL, out);
}

weir_status weir_config_i64_or(const char *name, int64_t fallback, int64_t *out) {
    return config_i64(name, &fallback, out);
}

static char *cstr_of(const operator_string_t *s) {
    char *p = xmalloc(s->len + 1);
    memcpy(p, s->ptr, s->len);
    p[s->len] = 0;
    return p;
}

/* ---------------------------------------------------------------- exports */

static bool is_open;

void exports_weir_operator_guest_describe(exports_weir_operator_guest_operator_spec_t *ret) {
    size_t n = 0;
    while (n < WEIR_MAX_STATES && def->states[n].name) n++;
    ret->name = owned_cstr(def->name);
    ret->version = owned_cstr(def->version);
    ret->states.len = n;
    ret->states.ptr = n ? xmalloc(n * sizeof(weir_operator_types_state_spec_t)) : NULL;
    for (size_t i = 0; i < n; i++) {
        ret->states.ptr[i] = (weir_operator_types_state_spec_t){
            owned_cstr(def->states[i].name),
            (weir_operator_types_state_kind_t)def->states[i].kind,
            def->states[i].version,
        };
    }
}

static void call_end(void) {
    call_keys = NULL;
    n_call_keys = 0;
    watermark_known = false;
    sticky_set = false;
    call_memory_reset();
}

bool exports_weir_operator_guest_open(exports_weir_operator_guest_task_info_t *info,
                                      operator_list_tuple2_string_string_t *config,
                                      operator_string_t *err) {
    task = (weir_task_info){cstr_of(&info->operator_id), info->subtask, info->parallelism,
                            info->max_parallelism, info->attempt};
    /* Sorted by name, the last of duplicate names winning, as the Rust SDK's BTreeMap. */
    config_names = xmalloc(config->len * sizeof(char *));
    config_values = xmalloc(config->len * sizeof(char *));
    n_config = 0;
    for (size_t i = 0; i < config->len; i++) {
        char *name = cstr_of(&config->ptr[i].f0), *value = cstr_of(&config->ptr[i].f1);
        size_t at = 0;
        while (at < n_config && strcmp(config_names[at], name) < 0) at++;
        if (at < n_config && strcmp(config_names[at], name) == 0) {
            free(name);
            free(config_values[at]);
            config_values[at] = value;
            continue;
        }
        memmove(config_names + at + 1, config_names + at, (n_config - at) * sizeof(char *));
        memmove(config_values + at + 1, config_values + at, (n_config - at) * sizeof(char *));
        config_names[at] = name;
        config_values[at] = value;
        n_config++;
    }
    exports_weir_operator_guest_task_info_free(info);
    operator_list_tuple2_string_string_free(config);

    message.len = 0;
    weir_status s = def->open ? def->open() : WEIR_OK;
    flush_all();
    if (s == WEIR_OK && sticky_set) {
        s = WEIR_FATAL;
        message.len = 0;
        weir_buf_append(&message, sticky.data, sticky.len);
    }
    call_end();
    if (s != WEIR_OK) {
        *err = message.len ? owned_string(message.data, message.len)
                           : owned_cstr("the operator's open failed");
        return false;
    }
    is_open = true;
    return true;
}

static bool fail(exports_weir_operator_guest_error_t *err, const uint8_t *text, size_t len) {
    err->tag = WEIR_OPERATOR_TYPES_ERROR_FATAL;
    err->val.fatal = owned_string(text, len);
    return false;
}

static bool fail_str(exports_weir_operator_guest_error_t *err, const char *text) {
    return fail(err, (const uint8_t *)text, strlen(text));
}

/* A fatal error whose message is `prefix` + the recorded message. */
static bool fail_message(exports_weir_operator_guest_error_t *err, const char *prefix) {
    weir_buf text = {0};
    weir_buf_append(&text, prefix, strlen(prefix));
    weir_buf_append(&text, message.data, message.len);
    bool r = fail(err, text.data, text.len);
    weir_buf_free(&text);
    return r;
}

static weir_event *events;
static size_t cap_events;
static weir_bytes *keys_of_call;
static size_t cap_keys_of_call;

bool exports_weir_operator_guest_process(exports_weir_operator_guest_batch_t *input,
                                         exports_weir_operator_guest_batch_t *ret,
                                         exports_weir_operator_guest_error_t *err) {
    bool ok;
    if (!is_open || !def->process) {
        ok = fail_str(err, is_open ? "the operator has no `process` callback"
                                   : "the operator was called before `open`");
        exports_weir_operator_guest_batch_free(input);
        return ok;
    }
    size_t n = input->timestamps.len;
    if (input->key_lens.len != n || input->value_lens.len != n) {
        ok = fail_str(err, "malformed batch: the length lists differ");
        exports_weir_operator_guest_batch_free(input);
        return ok;
    }
    /* Split the flat batch into events. */
    grow(&events, &cap_events, n, sizeof(weir_event));
    grow(&keys_of_call, &cap_keys_of_call, n, sizeof(weir_bytes));
    const uint8_t *data = input->data.len ? input->data.ptr : (const uint8_t *)"";
    size_t at = 0, size = input->data.len;
    for (size_t i = 0; i < n; i++) {
        int32_t key_len = input->key_lens.ptr[i];
        weir_bytes key = WEIR_NO_KEY;
        if (key_len < -1 || (key_len >= 0 && (size_t)key_len > size - at)) goto malformed;
        if (key_len >= 0) {
            key = (weir_bytes){data + at, (size_t)key_len};
            at += (size_t)key_len;
        }
        uint32_t value_len = input->value_lens.ptr[i];
        if (value_len > size - at) goto malformed;
        events[i] = (weir_event){key, {data + at, value_len}, input->timestamps.ptr[i]};
        at += value_len;
        keys_of_call[i] = key;
    }
    input_data = data;
    input_len = size;
    call_keys = keys_of_call;
    n_call_keys = n;
    message.len = 0;

    weir_output out = {.hint = n, .data_hint = size + 8 * n};
    weir_status s = WEIR_OK;
    size_t bad = 0;
    bool in_prefetch = false;
    if (def->prefetch) {
        s = def->prefetch(events, n);
        in_prefetch = s != WEIR_OK;
    }
    for (size_t i = 0; s == WEIR_OK && !sticky_set && i < n; i++) {
        current_at = i;
        s = def->process(&events[i], &out);
        bad = i;
    }
    current_at = SIZE_MAX;
    /* State written before a bad input is kept, so flush in every case. */
    flush_all();
    if (sticky_set) {
        drop_output(&out);
        ok = fail(err, sticky.data, sticky.len);
    } else if (s == WEIR_BAD_INPUT && !in_prefetch) {
        err->tag = WEIR_OPERATOR_TYPES_ERROR_BAD_INPUT;
        err->val.bad_input.index = (uint32_t)bad;
        err->val.bad_input.message = owned_string(message.data, message.len);
        err->val.bad_input.output = take_output(&out);
        ok = false;
    } else if (s != WEIR_OK) {
        drop_output(&out);
        ok = s == WEIR_BAD_INPUT ? fail_message(err, "bad input: ")
                                 : fail(err, message.data, message.len);
    } else {
        *ret = take_output(&out);
        ok = true;
    }
    call_end();
    exports_weir_operator_guest_batch_free(input);
    return ok;

malformed:
    exports_weir_operator_guest_batch_free(input);
    return fail_str(err, "malformed batch: lengths exceed the data");
}

static weir_timer *timers;
static size_t cap_timers;

bool exports_weir_operator_guest_on_timer(exports_weir_operator_guest_timers_t *fired,
                                          exports_weir_operator_guest_batch_t *ret,
                                          exports_weir_operator_guest_error_t *err) {
    bool ok;
    size_t n = fired->timestamps.len;
    if (!is_open) {
        ok = fail_str(err, "the operator was called before `open`");
    } else if (fired->keys.lens.len != n) {
        ok = fail_str(err, "malformed timers: the length lists differ");
    } else {
        grow(&keys_of_call, &cap_keys_of_call, n, sizeof(weir_bytes));
        grow(&timers, &cap_timers, n, sizeof(weir_timer));
        if (!split_blobs(&fired->keys, keys_of_call)) {
            ok = fail_str(err, "malformed blobs from the host");
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            timers[i] = (weir_timer){keys_of_call[i], fired->timestamps.ptr[i],
                                     (weir_time_domain)fired->domain};
        input_data = fired->keys.data.ptr;
        input_len = fired->keys.data.len;
        call_keys = keys_of_call;
        n_call_keys = n;
        message.len = 0;

        weir_output out = {.hint = n, .data_hint = input_len + 16 * n};
        weir_status s = def->prefetch_timers ? def->prefetch_timers(timers, n) : WEIR_OK;
        for (size_t i = 0; s == WEIR_OK && !sticky_set && def->on_timer && i < n; i++) {
            current_at = i;
            s = def->on_timer(&timers[i], &out);
        }
        current_at = SIZE_MAX;
        flush_all();
        if (sticky_set) {
            drop_output(&out);
            ok = fail(err, sticky.data, sticky.len);
        } else if (s == WEIR_BAD_INPUT) {
            drop_output(&out);
            ok = fail_message(err, "on_timer rejected a timer: ");
        } else if (s != WEIR_OK) {
            drop_output(&out);
            ok = fail(err, message.data, message.len);
        } else {
            *ret = take_output(&out);
            ok = true;
        }
        call_end();
    }
done:
    exports_weir_operator_guest_timers_free(fired);
    return ok;
}

bool exports_weir_operator_guest_migrate(operator_string_t *state, uint32_t from_version,
                                         exports_weir_operator_guest_blobs_t *values,
                                         exports_weir_operator_guest_blobs_t *ret,
                                         exports_weir_operator_guest_migrate_error_t *err) {
    char *name = cstr_of(state);
    operator_string_free(state);
    size_t n = values->lens.len;
    weir_bytes *parts = xmalloc((n + 1) * sizeof(weir_bytes));
    bool ok = split_blobs(values, parts);
    weir_buf data = {0}, one = {0};
    int32_t *lens = n ? xmalloc(n * sizeof(int32_t)) : NULL;
    if (!ok) {
        err->index = 0;
        err->message = owned_cstr("malformed blobs from the host");
    }
    for (size_t i = 0; ok && i < n; i++) {
        if (!parts[i].ptr) {
            lens[i] = -1;
            continue;
        }
        one.len = 0;
        message.len = 0;
        weir_status s = WEIR_FATAL;
        if (def->migrate) {
            s = def->migrate(name, from_version, parts[i], &one);
        } else {
            weir_fatal("%s %s has no migration for state `%s` from version %u", def->name,
                       def->version, name, from_version);
        }
        if (s != WEIR_OK) {
            err->index = (uint32_t)i;
            err->message = message.len ? owned_string(message.data, message.len)
                                       : owned_cstr("the value could not be migrated");
            ok = false;
            break;
        }
        weir_buf_append(&data, one.data, one.len);
        lens[i] = (int32_t)one.len;
    }
    weir_buf_free(&one);
    free(parts);
    free(name);
    exports_weir_operator_guest_blobs_free(values);
    call_end();
    if (!ok) {
        weir_buf_free(&data);
        free(lens);
        return false;
    }
    if (data.len) {
        ret->data = (operator_list_u8_t){data.data, data.len};
    } else {
        weir_buf_free(&data);
        ret->data = (operator_list_u8_t){NULL, 0};
    }
    ret->lens = (operator_list_s32_t){lens, n};
    return true;
}
