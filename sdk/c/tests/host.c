/*
 * host.c: the stand-in host of the C runner (see host.h). Each function
 * has the signature operator.h declares; lists it returns are malloc'd and
 * become the caller's, as the generated bindings' are.
 */
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "operator.h"

typedef struct {
    weir_buf state, key, map_key, value; /* map_key unused for value and list entries */
    int kind;                            /* 0 value, 1 map, 2 list */
} entry;

static entry *entries;
static size_t n_entries, cap_entries;
static int64_t watermark = INT64_MIN;
static weir_buf calls; /* the recorded calls, comma-separated */
static int n_calls;

static char *names[256]; /* handle -> state name */
static int n_names;

static void copy(weir_buf *b, weir_bytes bytes) {
    b->len = 0;
    weir_buf_append(b, bytes.ptr, bytes.len);
}

static bool same(const weir_buf *b, weir_bytes bytes) {
    return b->len == bytes.len && (bytes.len == 0 || memcmp(b->data, bytes.ptr, bytes.len) == 0);
}

static entry *find(int kind, weir_bytes state, weir_bytes key, weir_bytes map_key) {
    for (size_t i = 0; i < n_entries; i++) {
        entry *e = &entries[i];
        if (e->kind == kind && same(&e->state, state) && same(&e->key, key) &&
            (kind != 1 || same(&e->map_key, map_key)))
            return e;
    }
    return NULL;
}

static entry *add(int kind, weir_bytes state, weir_bytes key, weir_bytes map_key, weir_bytes value) {
    if (n_entries == cap_entries) {
        cap_entries = cap_entries ? 2 * cap_entries : 64;
        entries = realloc(entries, cap_entries * sizeof(entry));
        if (!entries) abort();
    }
    entry *e = &entries[n_entries++];
    *e = (entry){.kind = kind};
    copy(&e->state, state);
    copy(&e->key, key);
    copy(&e->map_key, map_key);
    copy(&e->value, value);
    return e;
}

static void drop(entry *e) {
    weir_buf_free(&e->state);
    weir_buf_free(&e->key);
    weir_buf_free(&e->map_key);
    weir_buf_free(&e->value);
    /* In order: a list's entries stay in the order they were added. */
    size_t i = (size_t)(e - entries);
    memmove(e, e + 1, (n_entries - i - 1) * sizeof(entry));
    n_entries--;
}

static const weir_bytes NONE = {(const uint8_t *)"", 0};

void host_put_value(weir_bytes state, weir_bytes key, weir_bytes value) {
    add(0, state, key, NONE, value);
}

void host_put_map(weir_bytes state, weir_bytes key, weir_bytes map_key, weir_bytes value) {
    add(1, state, key, map_key, value);
}

void host_add_list(weir_bytes state, weir_bytes key, weir_bytes value) {
    add(2, state, key, NONE, value);
}

void host_set_watermark(int64_t w) { watermark = w; }

void host_take_calls(weir_buf *out) {
    weir_buf_append(out, "[", 1);
    weir_buf_append(out, calls.data, calls.len);
    weir_buf_append(out, "]", 1);
    calls.len = 0;
    n_calls = 0;
}

/* ---------------------------------------------------------------- recording */

static weir_buf record; /* the call being written */

static void begin(const char *call) {
    record.len = 0;
    weir_json_object_begin(&record);
    weir_json_key(&record, "call");
    weir_json_string(&record, weir_str(call));
}

static void field_text(const char *name, weir_bytes text) {
    weir_json_key(&record, name);
    if (text.ptr)
        weir_json_string(&record, text);
    else
        weir_json_null(&record);
}

static void end(void) {
    weir_json_object_end(&record);
    if (n_calls++) weir_buf_append(&calls, ",", 1);
    weir_buf_append(&calls, record.data, record.len);
}

static weir_bytes name_of(int32_t handle) { return weir_str(names[handle]); }

static int32_t new_handle(operator_string_t *name) {
    char *n = malloc(name->len + 1);
    if (!n) abort();
    memcpy(n, name->ptr, name->len);
    n[name->len] = 0;
    names[n_names] = n;
    return n_names++;
}

/* The parts of blobs (ptr NULL: absent). */
static size_t split(const weir_operator_types_blobs_t *b, weir_bytes **parts) {
    *parts = malloc((b->lens.len + 1) * sizeof(weir_bytes));
    if (!*parts) abort();
    size_t at = 0;
    for (size_t i = 0; i < b->lens.len; i++) {
        int32_t n = b->lens.ptr[i];
        if (n < 0) {
            (*parts)[i] = (weir_bytes){NULL, 0};
            continue;
        }
        (*parts)[i] = (weir_bytes){n ? b->data.ptr + at : (const uint8_t *)"", (size_t)n};
        at += (size_t)n;
    }
    return b->lens.len;
}

/* Blobs the caller owns, of `n` parts. */
static void join(weir_operator_types_blobs_t *ret, const weir_bytes *parts, size_t n) {
    weir_buf data = {0};
    int32_t *lens = n ? malloc(n * sizeof(int32_t)) : NULL;
    for (size_t i = 0; i < n; i++) {
        lens[i] = parts[i].ptr ? (int32_t)parts[i].len : -1;
        if (parts[i].ptr) weir_buf_append(&data, parts[i].ptr, parts[i].len);
    }
    ret->data = (operator_list_u8_t){data.len ? data.data : NULL, data.len};
    if (!data.len) weir_buf_free(&data);
    ret->lens = (operator_list_s32_t){lens, n};
}

/* A put-many's entries sorted by key and then user key bytes: their order
 * is not part of the contract. */
typedef struct {
    weir_bytes a, b, c;
} triple;

static int cmp_bytes(weir_bytes x, weir_bytes y) {
    size_t n = x.len < y.len ? x.len : y.len;
    int r = n ? memcmp(x.ptr, y.ptr, n) : 0;
    return r ? r : (x.len > y.len) - (x.len < y.len);
}

static int cmp_triple(const void *x, const void *y) {
    const triple *p = x, *q = y;
    int r = cmp_bytes(p->a, q->a);
    return r ? r : cmp_bytes(p->b.ptr ? p->b : NONE, q->b.ptr ? q->b : NONE);
}

static void entries_field(triple *t, size_t n, int width, bool sort) {
    if (sort) qsort(t, n, sizeof(triple), cmp_triple);
    weir_json_key(&record, "entries");
    weir_json_array_begin(&record);
    for (size_t i = 0; i < n; i++) {
        weir_json_array_begin(&record);
        weir_json_string(&record, t[i].a);
        if (t[i].b.ptr)
            weir_json_string(&record, t[i].b);
        else
            weir_json_null(&record);
        if (width == 3) {
            if (t[i].c.ptr)
                weir_json_string(&record, t[i].c);
            else
                weir_json_null(&record);
        }
        weir_json_array_end(&record);
    }
    weir_json_array_end(&record);
}

/* ---------------------------------------------------------------- state */

bool weir_operator_state_static_value_state_open(operator_string_t *name,
                                                 weir_operator_state_own_value_state_t *ret,
                                                 operator_string_t *err) {
    (void)err;
    ret->__handle = new_handle(name);
    return true;
}

weir_operator_state_borrow_value_state_t
weir_operator_state_borrow_value_state(weir_operator_state_own_value_state_t handle) {
    return (weir_operator_state_borrow_value_state_t){handle.__handle};
}

void weir_operator_state_method_value_state_get_many(weir_operator_state_borrow_value_state_t self,
                                                     weir_operator_state_blobs_t *keys,
                                                     weir_operator_state_blobs_t *ret) {
    weir_bytes *k;
    size_t n = split(keys, &k);
    weir_bytes *found = malloc((n + 1) * sizeof(weir_bytes));
    begin("value.get-many");
    weir_json_key(&record, "keys");
    weir_json_array_begin(&record);
    for (size_t i = 0; i < n; i++) {
        weir_json_string(&record, k[i]);
        entry *e = find(0, name_of(self.__handle), k[i], NONE);
        found[i] = e ? weir_buf_bytes(&e->value) : (weir_bytes){NULL, 0};
    }
    weir_json_array_end(&record);
    field_text("state", name_of(self.__handle));
    end();
    join(ret, found, n);
    free(found);
    free(k);
}

void weir_operator_state_method_value_state_put_many(weir_operator_state_borrow_value_state_t self,
                                                     weir_operator_state_blobs_t *keys,
                                                     weir_operator_state_blobs_t *values) {
    weir_bytes *k, *v;
    size_t n = split(keys, &k);
    split(values, &v);
    triple *t = malloc((n + 1) * sizeof(triple));
    for (size_t i = 0; i < n; i++) t[i] = (triple){k[i], v[i], {NULL, 0}};
    begin("value.put-many");
    entries_field(t, n, 2, true);
    field_text("state", name_of(self.__handle));
    end();
    weir_bytes state = name_of(self.__handle);
    for (size_t i = 0; i < n; i++) {
        entry *e = find(0, state, k[i], NONE);
        if (v[i].ptr) {
            if (e)
                copy(&e->value, v[i]);
            else
                add(0, state, k[i], NONE, v[i]);
        } else if (e) {
            drop(e);
        }
    }
    free(t);
    free(k);
    free(v);
}

bool weir_operator_state_static_map_state_open(operator_string_t *name,
                                               weir_operator_state_own_map_state_t *ret,
                                               operator_string_t *err) {
    (void)err;
    ret->__handle = new_handle(name);
    return true;
}

weir_operator_state_borrow_map_state_t
weir_operator_state_borrow_map_state(weir_operator_state_own_map_state_t handle) {
    return (weir_operator_state_borrow_map_state_t){handle.__handle};
}

void weir_operator_state_method_map_state_get_many(weir_operator_state_borrow_map_state_t self,
                                                   weir_operator_state_blobs_t *keys,
                                                   weir_operator_state_blobs_t *map_keys,
                                                   weir_operator_state_blobs_t *ret) {
    weir_bytes *k, *m;
    size_t n = split(keys, &k);
    split(map_keys, &m);
    weir_bytes *found = malloc((n + 1) * sizeof(weir_bytes));
    begin("map.get-many");
    weir_json_key(&record, "pairs");
    weir_json_array_begin(&record);
    for (size_t i = 0; i < n; i++) {
        weir_json_array_begin(&record);
        weir_json_string(&record, k[i]);
        weir_json_string(&record, m[i]);
        weir_json_array_end(&record);
        entry *e = find(1, name_of(self.__handle), k[i], m[i]);
        found[i] = e ? weir_buf_bytes(&e->value) : (weir_bytes){NULL, 0};
    }
    weir_json_array_end(&record);
    field_text("state", name_of(self.__handle));
    end();
    join(ret, found, n);
    free(found);
    free(k);
    free(m);
}

void weir_operator_state_method_map_state_put_many(weir_operator_state_borrow_map_state_t self,
                                                   weir_operator_state_blobs_t *keys,
                                                   weir_operator_state_blobs_t *map_keys,
                                                   weir_operator_state_blobs_t *values) {
    weir_bytes *k, *m, *v;
    size_t n = split(keys, &k);
    split(map_keys, &m);
    split(values, &v);
    triple *t = malloc((n + 1) * sizeof(triple));
    for (size_t i = 0; i < n; i++) t[i] = (triple){k[i], m[i], v[i]};
    begin("map.put-many");
    entries_field(t, n, 3, true);
    field_text("state", name_of(self.__handle));
    end();
    weir_bytes state = name_of(self.__handle);
    for (size_t i = 0; i < n; i++) {
        entry *e = find(1, state, k[i], m[i]);
        if (v[i].ptr) {
            if (e)
                copy(&e->value, v[i]);
            else
                add(1, state, k[i], m[i], v[i]);
        } else if (e) {
            drop(e);
        }
    }
    free(t);
    free(k);
    free(m);
    free(v);
}

static int cmp_entry(const void *x, const void *y) {
    const entry *const *p = x, *const *q = y;
    return cmp_bytes(weir_buf_bytes(&(*p)->map_key), weir_buf_bytes(&(*q)->map_key));
}

void weir_operator_state_method_map_state_entries(weir_operator_state_borrow_map_state_t self,
                                                  operator_list_u8_t *key,
                                                  weir_operator_state_tuple2_blobs_blobs_t *ret) {
    weir_bytes k = {key->len ? key->ptr : (const uint8_t *)"", key->len};
    weir_bytes state = name_of(self.__handle);
    begin("map.entries");
    field_text("key", k);
    field_text("state", state);
    end();
    entry **found = malloc((n_entries + 1) * sizeof(entry *));
    size_t n = 0;
    for (size_t i = 0; i < n_entries; i++)
        if (entries[i].kind == 1 && same(&entries[i].state, state) && same(&entries[i].key, k))
            found[n++] = &entries[i];
    qsort(found, n, sizeof(entry *), cmp_entry);
    weir_bytes *mks = malloc((n + 1) * sizeof(weir_bytes)), *vs = malloc((n + 1) * sizeof(weir_bytes));
    for (size_t i = 0; i < n; i++) {
        mks[i] = weir_buf_bytes(&found[i]->map_key);
        vs[i] = weir_buf_bytes(&found[i]->value);
    }
    join(&ret->f0, mks, n);
    join(&ret->f1, vs, n);
    free(found);
    free(mks);
    free(vs);
}

void weir_operator_state_method_map_state_clear(weir_operator_state_borrow_map_state_t self,
                                                operator_list_u8_t *key) {
    weir_bytes k = {key->len ? key->ptr : (const uint8_t *)"", key->len};
    weir_bytes state = name_of(self.__handle);
    begin("map.clear");
    field_text("key", k);
    field_text("state", state);
    end();
    for (size_t i = n_entries; i-- > 0;)
        if (entries[i].kind == 1 && same(&entries[i].state, state) && same(&entries[i].key, k))
            drop(&entries[i]);
}

bool weir_operator_state_static_list_state_open(operator_string_t *name,
                                                weir_operator_state_own_list_state_t *ret,
                                                operator_string_t *err) {
    (void)err;
    ret->__handle = new_handle(name);
    return true;
}

weir_operator_state_borrow_list_state_t
weir_operator_state_borrow_list_state(weir_operator_state_own_list_state_t handle) {
    return (weir_operator_state_borrow_list_state_t){handle.__handle};
}

/* The list of `key`, in the order its entries were added. */
static size_t list_of(weir_bytes state, weir_bytes key, weir_bytes **out) {
    *out = malloc((n_entries + 1) * sizeof(weir_bytes));
    size_t n = 0;
    for (size_t i = 0; i < n_entries; i++)
        if (entries[i].kind == 2 && same(&entries[i].state, state) && same(&entries[i].key, key))
            (*out)[n++] = weir_buf_bytes(&entries[i].value);
    return n;
}

void weir_operator_state_method_list_state_get(weir_operator_state_borrow_list_state_t self,
                                               operator_list_u8_t *key,
                                               weir_operator_state_blobs_t *ret) {
    weir_bytes k = {key->len ? key->ptr : (const uint8_t *)"", key->len};
    weir_bytes state = name_of(self.__handle);
    begin("list.get");
    field_text("key", k);
    field_text("state", state);
    end();
    weir_bytes *values;
    size_t n = list_of(state, k, &values);
    join(ret, values, n);
    free(values);
}

void weir_operator_state_method_list_state_add_many(weir_operator_state_borrow_list_state_t self,
                                                    weir_operator_state_blobs_t *keys,
                                                    weir_operator_state_blobs_t *values) {
    weir_bytes *k, *v;
    size_t n = split(keys, &k);
    split(values, &v);
    triple *t = malloc((n + 1) * sizeof(triple));
    for (size_t i = 0; i < n; i++) t[i] = (triple){k[i], v[i], {NULL, 0}};
    begin("list.add-many");
    entries_field(t, n, 2, false);
    field_text("state", name_of(self.__handle));
    end();
    for (size_t i = 0; i < n; i++) add(2, name_of(self.__handle), k[i], NONE, v[i]);
    free(t);
    free(k);
    free(v);
}

void weir_operator_state_method_list_state_update(weir_operator_state_borrow_list_state_t self,
                                                  operator_list_u8_t *key,
                                                  weir_operator_state_blobs_t *values) {
    weir_bytes k = {key->len ? key->ptr : (const uint8_t *)"", key->len};
    weir_bytes state = name_of(self.__handle);
    weir_bytes *v;
    size_t n = split(values, &v);
    begin("list.update");
    field_text("key", k);
    field_text("state", state);
    weir_json_key(&record, "values");
    weir_json_array_begin(&record);
    for (size_t i = 0; i < n; i++) weir_json_string(&record, v[i]);
    weir_json_array_end(&record);
    end();
    for (size_t i = n_entries; i-- > 0;)
        if (entries[i].kind == 2 && same(&entries[i].state, state) && same(&entries[i].key, k))
            drop(&entries[i]);
    for (size_t i = 0; i < n; i++) add(2, state, k, NONE, v[i]);
    free(v);
}

/* ---------------------------------------------------------------- timers, logging */

static void timer_changes(const char *call, weir_operator_timers_time_domain_t domain,
                          weir_operator_timers_blobs_t *keys, operator_list_s64_t *timestamps) {
    weir_bytes *k;
    size_t n = split(keys, &k);
    begin(call);
    field_text("domain", weir_str(domain == WEIR_OPERATOR_TYPES_TIME_DOMAIN_EVENT_TIME
                                      ? "event-time"
                                      : "processing-time"));
    weir_json_key(&record, "entries");
    weir_json_array_begin(&record);
    for (size_t i = 0; i < n; i++) {
        weir_json_array_begin(&record);
        if (k[i].ptr)
            weir_json_string(&record, k[i]);
        else
            weir_json_null(&record);
        weir_json_i64(&record, timestamps->ptr[i]);
        weir_json_array_end(&record);
    }
    weir_json_array_end(&record);
    end();
    free(k);
}

void weir_operator_timers_register_many(weir_operator_timers_time_domain_t domain,
                                        weir_operator_timers_blobs_t *keys,
                                        operator_list_s64_t *timestamps) {
    timer_changes("timers.register-many", domain, keys, timestamps);
}

void weir_operator_timers_delete_many(weir_operator_timers_time_domain_t domain,
                                      weir_operator_timers_blobs_t *keys,
                                      operator_list_s64_t *timestamps) {
    timer_changes("timers.delete-many", domain, keys, timestamps);
}

int64_t weir_operator_timers_current_watermark(void) {
    begin("timers.current-watermark");
    end();
    return watermark;
}

int64_t weir_operator_timers_processing_time(void) {
    begin("timers.processing-time");
    end();
    return 0;
}

void weir_operator_logging_log(weir_operator_logging_level_t level, operator_string_t *message) {
    (void)level;
    (void)message;
}

/* ---------------------------------------------------------------- the generated free functions */

void operator_string_free(operator_string_t *ptr) {
    if (ptr->len > 0) free(ptr->ptr);
}

void operator_list_s32_free(operator_list_s32_t *ptr) {
    if (ptr->len > 0) free(ptr->ptr);
}

void operator_list_tuple2_string_string_free(operator_list_tuple2_string_string_t *ptr) {
    for (size_t i = 0; i < ptr->len; i++) {
        operator_string_free(&ptr->ptr[i].f0);
        operator_string_free(&ptr->ptr[i].f1);
    }
    if (ptr->len > 0) free(ptr->ptr);
}

void exports_weir_operator_guest_batch_free(exports_weir_operator_guest_batch_t *ptr) {
    if (ptr->data.len > 0) free(ptr->data.ptr);
    if (ptr->key_lens.len > 0) free(ptr->key_lens.ptr);
    if (ptr->value_lens.len > 0) free(ptr->value_lens.ptr);
    if (ptr->timestamps.len > 0) free(ptr->timestamps.ptr);
}

void exports_weir_operator_guest_blobs_free(exports_weir_operator_guest_blobs_t *ptr) {
    if (ptr->data.len > 0) free(ptr->data.ptr);
    if (ptr->lens.len > 0) free(ptr->lens.ptr);
}

void exports_weir_operator_guest_task_info_free(exports_weir_operator_guest_task_info_t *ptr) {
    operator_string_free(&ptr->operator_id);
}

void exports_weir_operator_guest_timers_free(exports_weir_operator_guest_timers_t *ptr) {
    if (ptr->keys.data.len > 0) free(ptr->keys.data.ptr);
    if (ptr->keys.lens.len > 0) free(ptr->keys.lens.ptr);
    if (ptr->timestamps.len > 0) free(ptr->timestamps.ptr);
}
