/*
 * vectors.c: the shared test vectors of sdk/vectors/ (sdk/PROTOCOL.md is
 * the contract they check, sdk/vectors/README.md their format), run
 * against the C SDK compiled for the host: canonical JSON through the
 * SDK's JSON readers and writers, flat batches and fired timers through
 * the `process` and `on-timer` exports, and whole calls (state caches,
 * flush order, timers, the reject protocol) through the exports with the
 * scripted operator below and the stand-in host of host.c; and migrate.
 *
 * Build (sdk/test.sh does): `wit-bindgen c wit --world operator --out-dir
 * B`, then `cc -I sdk/c -I B sdk/c/weir.c sdk/c/weir_util.c
 * sdk/c/tests/host.c sdk/c/tests/vectors.c`; run it with the vectors'
 * folder as its argument. Each case runs in a child process of its own:
 * a fresh instance of the SDK, as a component instance is.
 *
 * The C SDK has no floats, so the JSON cases marked `float` are skipped,
 * and so are the migrate cases of an operator without migrate (the
 * operator here is one constant definition, and it has one); the SDK keeps
 * no state from call to call, so a key a `get-many` names as `known` is
 * fetched again, as the contract requires of such an SDK.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"
#include "operator.h"
#include "weir.h"

/* ---------------------------------------------------------------- JSON helpers */

static weir_bytes field(weir_bytes json, const char *name) {
    weir_bytes v = {NULL, 0};
    weir_json_field(json, name, &v);
    return v;
}

static bool has(weir_bytes json, const char *name) { return field(json, name).ptr != NULL; }

static bool is_null(weir_bytes json) { return json.len == 4 && memcmp(json.ptr, "null", 4) == 0; }

/* The text of a JSON string (NUL-terminated in `out`), or false. */
static bool text(weir_bytes json, weir_buf *out) {
    out->len = 0;
    if (!weir_json_read_string(json, out)) return false;
    weir_buf_append(out, "", 1);
    out->len--;
    return true;
}

static int64_t i64(weir_bytes json) {
    int64_t v = 0;
    if (!weir_json_read_i64(json, &v)) {
        fprintf(stderr, "not an integer: %.*s\n", (int)json.len, (const char *)json.ptr);
        abort();
    }
    return v;
}

typedef struct {
    weir_buf name;
    weir_bytes value;
} named;

static int cmp_named(const void *x, const void *y) {
    const named *p = x, *q = y;
    size_t n = p->name.len < q->name.len ? p->name.len : q->name.len;
    int r = n ? memcmp(p->name.data, q->name.data, n) : 0;
    return r ? r : (p->name.len > q->name.len) - (p->name.len < q->name.len);
}

/* Rewrites the JSON value `json` with the SDK's writers, after its readers:
 * the canonical form. With `sorted`, object fields in name order (to
 * compare), and without the field `skip` (if not NULL). False for a
 * number that is not a 64-bit integer (the C SDK has no floats). */
static bool canon(weir_bytes json, weir_buf *out, bool sorted, const char *skip) {
    const uint8_t *p = json.ptr, *end = json.ptr + json.len;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p == end) return false;
    switch (*p) {
    case '{': {
        size_t at = 0, n = 0, cap = 8;
        named *fields = malloc(cap * sizeof(named));
        weir_buf name = {0};
        weir_bytes value;
        while (weir_json_next_field(json, &at, &name, &value)) {
            if (skip && name.len == strlen(skip) && memcmp(name.data, skip, name.len) == 0) continue;
            if (n == cap) fields = realloc(fields, (cap *= 2) * sizeof(named));
            fields[n] = (named){{0}, value};
            weir_buf_append(&fields[n].name, name.data, name.len);
            weir_buf_append(&fields[n].name, "", 1);
            fields[n].name.len--;
            n++;
        }
        weir_buf_free(&name);
        if (sorted) qsort(fields, n, sizeof(named), cmp_named);
        bool ok = true;
        weir_json_object_begin(out);
        for (size_t i = 0; i < n; i++) {
            weir_json_key(out, fields[i].name.data ? (const char *)fields[i].name.data : "");
            ok = ok && canon(fields[i].value, out, sorted, skip);
            weir_buf_free(&fields[i].name);
        }
        weir_json_object_end(out);
        free(fields);
        return ok;
    }
    case '[': {
        size_t at = 0;
        weir_bytes element;
        bool ok = true;
        weir_json_array_begin(out);
        while (weir_json_next(json, &at, &element)) ok = ok && canon(element, out, sorted, skip);
        weir_json_array_end(out);
        return ok;
    }
    case '"': {
        weir_buf s = {0};
        bool ok = weir_json_read_string(json, &s);
        if (ok) weir_json_string(out, weir_buf_bytes(&s));
        weir_buf_free(&s);
        return ok;
    }
    case 't':
    case 'f': {
        bool b;
        if (!weir_json_read_bool(json, &b)) return false;
        weir_json_bool(out, b);
        return true;
    }
    case 'n':
        weir_json_null(out);
        return true;
    default: {
        int64_t i;
        uint64_t u;
        if (weir_json_read_i64(json, &i)) {
            weir_json_i64(out, i);
            return true;
        }
        if (weir_json_read_u64(json, &u)) {
            weir_json_u64(out, u);
            return true;
        }
        return false;
    }
    }
}

/* Whether two JSON values are equal (fields in any order). */
static bool same_json(weir_bytes a, weir_bytes b) {
    weir_buf x = {0}, y = {0};
    bool same = canon(a, &x, true, "known") && canon(b, &y, true, "known") && x.len == y.len &&
                (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
    weir_buf_free(&x);
    weir_buf_free(&y);
    return same;
}

static void unhex(weir_bytes json, uint8_t **data, size_t *len) {
    weir_buf s = {0};
    text(json, &s);
    *len = s.len / 2;
    *data = *len ? malloc(*len) : NULL;
    for (size_t i = 0; i < *len; i++) {
        unsigned v;
        sscanf((const char *)s.data + 2 * i, "%2x", &v);
        (*data)[i] = (uint8_t)v;
    }
    weir_buf_free(&s);
}

static void hex(weir_buf *out, weir_bytes bytes) {
    static const char digits[] = "0123456789abcdef";
    weir_buf h = {0};
    for (size_t i = 0; i < bytes.len; i++) {
        weir_buf_append(&h, &digits[bytes.ptr[i] >> 4], 1);
        weir_buf_append(&h, &digits[bytes.ptr[i] & 15], 1);
    }
    weir_json_string(out, weir_buf_bytes(&h));
    weir_buf_free(&h);
}

static size_t count(weir_bytes array) {
    size_t at = 0, n = 0;
    weir_bytes e;
    while (weir_json_next(array, &at, &e)) n++;
    return n;
}

/* ---------------------------------------------------------------- the scripted operator */

/* The declared states: up to three of each kind, named by the case. */
static char names[9][64];

static weir_status script_open(void);
static weir_status script_prefetch(const weir_event *events, size_t n);
static weir_status script_process(const weir_event *event, weir_output *out);
static weir_status script_prefetch_timers(const weir_timer *timers, size_t n);
static weir_status script_on_timer(const weir_timer *timer, weir_output *out);
static weir_status script_migrate(const char *state, uint32_t from_version, weir_bytes value,
                                  weir_buf *out);

WEIR_OPERATOR(
    .name = "vectors", .version = "1.0.0",
    .states = {{names[0], WEIR_VALUE, 1}, {names[1], WEIR_VALUE, 1}, {names[2], WEIR_VALUE, 1},
               {names[3], WEIR_MAP, 1}, {names[4], WEIR_MAP, 1}, {names[5], WEIR_MAP, 1},
               {names[6], WEIR_LIST, 1}, {names[7], WEIR_LIST, 1}, {names[8], WEIR_LIST, 1}},
    .open = script_open, .prefetch = script_prefetch, .process = script_process,
    .prefetch_timers = script_prefetch_timers, .on_timer = script_on_timer,
    .migrate = script_migrate, );

typedef struct {
    char name[64];
    int kind; /* 0 value, 1 map, 2 list */
    int number;
    void *handle;
} handle;

static handle handles[32];
static size_t n_handles;

static weir_bytes case_states; /* the case's `states` */
static weir_bytes prefetch_ops; /* the step's `prefetch` ops */
static weir_bytes items;        /* the step's events or timers */
static size_t next_item;        /* offset in `items` for weir_json_next */
static weir_buf mismatches;
static bool recording; /* the batch vectors: note what the operator sees */
static weir_buf seen;  /* [{"key":..,"value":..,"timestamp":..}, ...] */

static void *handle_of(weir_bytes op, int kind) {
    weir_buf name = {0};
    text(field(op, "state"), &name);
    weir_bytes number = field(op, "handle");
    int n = number.ptr ? (int)i64(number) : 0;
    for (size_t i = 0; i < n_handles; i++) {
        if (handles[i].kind == kind && handles[i].number == n &&
            strcmp(handles[i].name, (const char *)name.data) == 0) {
            weir_buf_free(&name);
            return handles[i].handle;
        }
    }
    fprintf(stderr, "op %.*s: no such state handle\n", (int)op.len, (const char *)op.ptr);
    abort();
}

static weir_status script_open(void) {
    size_t at = 0;
    weir_bytes s;
    int used[3] = {0, 0, 0};
    while (weir_json_next(case_states, &at, &s)) {
        weir_buf name = {0}, kind = {0};
        text(field(s, "name"), &name);
        text(field(s, "kind"), &kind);
        int k = strcmp((const char *)kind.data, "value") == 0 ? 0
                : strcmp((const char *)kind.data, "map") == 0 ? 1
                                                               : 2;
        /* Declared: the next free slot of its kind gets its name. */
        if (used[k] == 3) return weir_fatal("more than 3 %s states", (const char *)kind.data);
        snprintf(names[3 * k + used[k]++], sizeof names[0], "%s", (const char *)name.data);
        weir_bytes copies = field(s, "handles");
        int n = copies.ptr ? (int)i64(copies) : 1;
        for (int j = 0; j < n; j++) {
            handle *h = &handles[n_handles++];
            snprintf(h->name, sizeof h->name, "%s", (const char *)name.data);
            h->kind = k;
            h->number = j;
            h->handle = k == 0   ? (void *)weir_value_state_open(h->name)
                        : k == 1 ? (void *)weir_map_state_open(h->name)
                                 : (void *)weir_list_state_open(h->name);
            if (!h->handle) return WEIR_FATAL;
        }
        weir_buf_free(&name);
        weir_buf_free(&kind);
    }
    return WEIR_OK;
}

/* Notes a read that differs from the op's `expect` (`got` NULL: none). */
static void check(weir_bytes op, const weir_buf *got) {
    weir_bytes want = field(op, "expect");
    weir_bytes have = got ? weir_buf_bytes(got) : weir_str("null");
    if (same_json(have, want)) return;
    weir_buf_append(&mismatches, op.ptr, op.len);
    weir_buf_append(&mismatches, ": read ", 7);
    weir_buf_append(&mismatches, have.ptr, have.len);
    weir_buf_append(&mismatches, ", expected ", 11);
    weir_buf_append(&mismatches, want.ptr, want.len);
    weir_buf_append(&mismatches, "; ", 2);
}

/* The op's key (WEIR_NO_KEY for null), decoded into `buf`. */
static weir_bytes key_of(weir_bytes json, weir_buf *buf) {
    if (!json.ptr || is_null(json)) return WEIR_NO_KEY;
    text(json, buf);
    return weir_buf_bytes(buf);
}

static weir_bytes canonical(weir_bytes json, weir_buf *buf) {
    buf->len = 0;
    canon(json, buf, false, NULL);
    return weir_buf_bytes(buf);
}

static weir_time_domain domain_of(weir_bytes json) {
    weir_buf d = {0};
    text(json, &d);
    weir_time_domain r = strcmp((const char *)d.data, "event-time") == 0 ? WEIR_EVENT_TIME
                                                                          : WEIR_PROCESSING_TIME;
    weir_buf_free(&d);
    return r;
}

static weir_status run_op(weir_bytes op, weir_output *out) {
    weir_buf name = {0}, k = {0}, m = {0}, v = {0}, got = {0}, msg = {0};
    text(field(op, "op"), &name);
    const char *o = (const char *)name.data;
    weir_bytes key = key_of(field(op, "key"), &k);
    weir_status status = WEIR_OK;
    weir_bytes json;
    if (strcmp(o, "get") == 0) {
        bool found = weir_value_get(handle_of(op, 0), key, &json);
        if (found) canon(json, &got, false, NULL);
        check(op, found ? &got : NULL);
    } else if (strcmp(o, "set") == 0) {
        weir_value_put(handle_of(op, 0), key, canonical(field(op, "value"), &v));
    } else if (strcmp(o, "remove") == 0) {
        weir_value_remove(handle_of(op, 0), key);
    } else if (strcmp(o, "map.get") == 0) {
        bool found = weir_map_get(handle_of(op, 1), key, canonical(field(op, "map_key"), &m), &json);
        if (found) canon(json, &got, false, NULL);
        check(op, found ? &got : NULL);
    } else if (strcmp(o, "map.put") == 0) {
        weir_map_put(handle_of(op, 1), key, canonical(field(op, "map_key"), &m),
                     canonical(field(op, "value"), &v));
    } else if (strcmp(o, "map.remove") == 0) {
        weir_map_remove(handle_of(op, 1), key, canonical(field(op, "map_key"), &m));
    } else if (strcmp(o, "map.prefetch") == 0) {
        size_t at = 0;
        weir_bytes pair;
        while (weir_json_next(field(op, "pairs"), &at, &pair)) {
            size_t i = 0;
            weir_bytes pk, pm;
            weir_json_next(pair, &i, &pk);
            weir_json_next(pair, &i, &pm);
            weir_map_prefetch(handle_of(op, 1), key_of(pk, &k), canonical(pm, &m));
        }
    } else if (strcmp(o, "map.entries") == 0) {
        weir_map_entries e = weir_map_entries_of(handle_of(op, 1), key);
        weir_json_array_begin(&got);
        for (size_t i = 0; i < e.count; i++) {
            weir_json_array_begin(&got);
            canon(e.map_keys[i], &got, false, NULL);
            canon(e.values[i], &got, false, NULL);
            weir_json_array_end(&got);
        }
        weir_json_array_end(&got);
        check(op, &got);
    } else if (strcmp(o, "map.clear") == 0) {
        weir_map_clear(handle_of(op, 1), key);
    } else if (strcmp(o, "list.add") == 0) {
        weir_list_add(handle_of(op, 2), key, canonical(field(op, "value"), &v));
    } else if (strcmp(o, "list.get") == 0) {
        weir_list_values l = weir_list_get(handle_of(op, 2), key);
        weir_json_array_begin(&got);
        for (size_t i = 0; i < l.count; i++) canon(l.values[i], &got, false, NULL);
        weir_json_array_end(&got);
        check(op, &got);
    } else if (strcmp(o, "list.update") == 0) {
        weir_bytes values = field(op, "values");
        size_t n = count(values), at = 0, i = 0;
        weir_buf *bufs = calloc(n + 1, sizeof(weir_buf));
        weir_bytes *parts = calloc(n + 1, sizeof(weir_bytes));
        weir_bytes e;
        while (weir_json_next(values, &at, &e)) {
            parts[i] = canonical(e, &bufs[i]);
            i++;
        }
        weir_list_update(handle_of(op, 2), key, parts, n);
        for (i = 0; i < n; i++) weir_buf_free(&bufs[i]);
        free(bufs);
        free(parts);
    } else if (strcmp(o, "list.clear") == 0) {
        weir_list_clear(handle_of(op, 2), key);
    } else if (strcmp(o, "emit") == 0) {
        text(field(op, "value"), &v);
        weir_emit(out, key, weir_buf_bytes(&v), i64(field(op, "timestamp")));
    } else if (strcmp(o, "timer.register") == 0) {
        weir_register_timer(domain_of(field(op, "domain")), key, i64(field(op, "timestamp")));
    } else if (strcmp(o, "timer.delete") == 0) {
        weir_delete_timer(domain_of(field(op, "domain")), key, i64(field(op, "timestamp")));
    } else if (strcmp(o, "watermark") == 0) {
        weir_json_i64(&got, weir_watermark());
        check(op, &got);
    } else if (strcmp(o, "reject") == 0) {
        text(field(op, "message"), &msg);
        status = weir_bad_input("%s", (const char *)msg.data);
    } else if (strcmp(o, "fail") == 0) {
        text(field(op, "message"), &msg);
        status = weir_fatal("%s", (const char *)msg.data);
    } else {
        fprintf(stderr, "unknown op %s\n", o);
        abort();
    }
    weir_buf_free(&name);
    weir_buf_free(&k);
    weir_buf_free(&m);
    weir_buf_free(&v);
    weir_buf_free(&got);
    weir_buf_free(&msg);
    return status;
}

static weir_status run_ops(weir_bytes ops, weir_output *out) {
    size_t at = 0;
    weir_bytes op;
    if (!ops.ptr) return WEIR_OK;
    while (weir_json_next(ops, &at, &op)) WEIR_TRY(run_op(op, out));
    return WEIR_OK;
}

/* Notes an event or timer in record mode; else runs the next item's ops. */
static weir_status item(weir_bytes key, const weir_bytes *value, int64_t timestamp,
                        weir_output *out) {
    if (recording) {
        weir_json_object_begin(&seen);
        weir_json_key(&seen, "key");
        if (key.ptr)
            hex(&seen, key);
        else
            weir_json_null(&seen);
        weir_json_key(&seen, "timestamp");
        weir_json_i64(&seen, timestamp);
        if (value) {
            weir_json_key(&seen, "value");
            hex(&seen, *value);
        }
        weir_json_object_end(&seen);
        return WEIR_OK;
    }
    weir_bytes it;
    if (!weir_json_next(items, &next_item, &it)) return WEIR_OK;
    return run_ops(field(it, "ops"), out);
}

static weir_status script_prefetch(const weir_event *events, size_t n) {
    (void)events;
    (void)n;
    return run_ops(prefetch_ops, NULL);
}

static weir_status script_process(const weir_event *event, weir_output *out) {
    return item(event->key, &event->value, event->timestamp, out);
}

static weir_status script_prefetch_timers(const weir_timer *timers, size_t n) {
    (void)timers;
    (void)n;
    return run_ops(prefetch_ops, NULL);
}

static weir_status script_on_timer(const weir_timer *timer, weir_output *out) {
    return item(timer->key, NULL, timer->timestamp, out);
}

/* The vectors' migrate: [STATE,FROM,VALUE], refusing the value "refuse". */
static weir_status script_migrate(const char *state, uint32_t from_version, weir_bytes value,
                                  weir_buf *out) {
    if (value.len == 8 && memcmp(value.ptr, "\"refuse\"", 8) == 0)
        return weir_fatal("refused at version %u", from_version);
    weir_json_array_begin(out);
    weir_json_string(out, weir_str(state));
    weir_json_u64(out, from_version);
    weir_buf_append(out, ",", 1);
    weir_buf_append(out, value.ptr, value.len);
    weir_json_array_end(out);
    return WEIR_OK;
}

/* ---------------------------------------------------------------- driving the exports */

static void open_operator(void) {
    exports_weir_operator_guest_task_info_t task = {
        {(uint8_t *)strdup("vectors"), 7}, 0, 1, 128, 0};
    operator_list_tuple2_string_string_t config = {NULL, 0};
    operator_string_t err = {NULL, 0};
    if (!exports_weir_operator_guest_open(&task, &config, &err)) {
        fprintf(stderr, "open refused: %.*s\n", (int)err.len, (const char *)err.ptr);
        exit(1);
    }
}

/* A batch as the vectors write events: [[key, value, timestamp], ...]. */
static void events_json(weir_buf *out, const exports_weir_operator_guest_batch_t *b) {
    size_t at = 0;
    weir_json_array_begin(out);
    for (size_t i = 0; i < b->timestamps.len; i++) {
        weir_json_array_begin(out);
        if (b->key_lens.ptr[i] >= 0) {
            weir_json_string(out, (weir_bytes){b->data.ptr + at, (size_t)b->key_lens.ptr[i]});
            at += (size_t)b->key_lens.ptr[i];
        } else {
            weir_json_null(out);
        }
        weir_json_string(out, (weir_bytes){b->data.ptr + at, b->value_lens.ptr[i]});
        at += b->value_lens.ptr[i];
        weir_json_i64(out, b->timestamps.ptr[i]);
        weir_json_array_end(out);
    }
    weir_json_array_end(out);
}

/* What an export returned, as the vectors write results. */
static void result_json(weir_buf *out, bool ok, exports_weir_operator_guest_batch_t *ret,
                        exports_weir_operator_guest_error_t *err) {
    weir_json_object_begin(out);
    if (ok) {
        weir_json_key(out, "output");
        events_json(out, ret);
    } else if (err->tag == WEIR_OPERATOR_TYPES_ERROR_FATAL) {
        weir_json_key(out, "fatal");
        weir_json_string(out, (weir_bytes){err->val.fatal.ptr, err->val.fatal.len});
    } else {
        weir_json_key(out, "rejected");
        weir_json_object_begin(out);
        weir_json_key(out, "index");
        weir_json_u64(out, err->val.bad_input.index);
        weir_json_key(out, "message");
        weir_json_string(out, (weir_bytes){err->val.bad_input.message.ptr, err->val.bad_input.message.len});
        weir_json_key(out, "output");
        events_json(out, &err->val.bad_input.output);
        weir_json_object_end(out);
    }
    weir_json_object_end(out);
}

/* Calls `process` with the flat batch of `events` (text keys and values). */
static bool call_process(weir_bytes events, exports_weir_operator_guest_batch_t *ret,
                         exports_weir_operator_guest_error_t *err) {
    size_t n = count(events), at = 0, i = 0;
    weir_buf data = {0}, s = {0};
    int32_t *kl = malloc((n + 1) * sizeof(int32_t));
    uint32_t *vl = malloc((n + 1) * sizeof(uint32_t));
    int64_t *ts = malloc((n + 1) * sizeof(int64_t));
    weir_bytes e;
    while (weir_json_next(events, &at, &e)) {
        weir_bytes k = field(e, "key");
        if (is_null(k)) {
            kl[i] = -1;
        } else {
            text(k, &s);
            weir_buf_append(&data, s.data, s.len);
            kl[i] = (int32_t)s.len;
        }
        weir_bytes value = field(e, "value");
        s.len = 0;
        if (value.ptr) text(value, &s);
        weir_buf_append(&data, s.data, s.len);
        vl[i] = (uint32_t)s.len;
        ts[i] = i64(field(e, "timestamp"));
        i++;
    }
    exports_weir_operator_guest_batch_t input = {
        {data.len ? data.data : NULL, data.len}, {kl, n}, {vl, n}, {ts, n}};
    if (!data.len) weir_buf_free(&data);
    weir_buf_free(&s);
    return exports_weir_operator_guest_process(&input, ret, err);
}

static bool call_on_timer(weir_bytes on_timer, weir_bytes timers,
                          exports_weir_operator_guest_batch_t *ret,
                          exports_weir_operator_guest_error_t *err) {
    size_t n = count(timers), at = 0, i = 0;
    weir_buf data = {0}, s = {0};
    int32_t *lens = malloc((n + 1) * sizeof(int32_t));
    int64_t *ts = malloc((n + 1) * sizeof(int64_t));
    weir_bytes t;
    while (weir_json_next(timers, &at, &t)) {
        weir_bytes k = field(t, "key");
        if (is_null(k)) {
            lens[i] = -1;
        } else {
            text(k, &s);
            weir_buf_append(&data, s.data, s.len);
            lens[i] = (int32_t)s.len;
        }
        ts[i] = i64(field(t, "timestamp"));
        i++;
    }
    exports_weir_operator_guest_timers_t fired = {
        (weir_operator_types_time_domain_t)domain_of(field(on_timer, "domain")),
        {{data.len ? data.data : NULL, data.len}, {lens, n}},
        {ts, n}};
    if (!data.len) weir_buf_free(&data);
    weir_buf_free(&s);
    return exports_weir_operator_guest_on_timer(&fired, ret, err);
}

/* ---------------------------------------------------------------- the vector files */

static int failures, passed, skipped;

/* Reports a failed case (from a child). */
static void fail_case(const char *file, weir_bytes c, const char *fmt, const char *detail) {
    weir_buf name = {0};
    text(field(c, "name"), &name);
    fprintf(stderr, "%s: `%s`: ", file, name.data ? (const char *)name.data : "?");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\n");
    weir_buf_free(&name);
}

static int check_json(const char *file, weir_bytes c) {
    weir_bytes invalid = field(c, "invalid");
    weir_buf s = {0}, out = {0};
    if (invalid.ptr) {
        text(invalid, &s);
        bool valid = weir_json_valid(weir_buf_bytes(&s));
        if (valid) fail_case(file, c, "%s was read as valid JSON", (const char *)s.data);
        return valid ? 1 : 0;
    }
    weir_buf want = {0};
    text(field(c, "json"), &want);
    weir_bytes inputs[2] = {field(c, "input"), field(c, "json")};
    for (int i = 0; i < 2; i++) {
        if (!inputs[i].ptr) continue;
        text(inputs[i], &s);
        out.len = 0;
        if (!weir_json_valid(weir_buf_bytes(&s)) || !canon(weir_buf_bytes(&s), &out, false, NULL)) {
            fail_case(file, c, "%s was refused", (const char *)s.data);
            return 1;
        }
        if (out.len != want.len || memcmp(out.data, want.data, out.len) != 0) {
            weir_buf_append(&out, "", 1);
            fail_case(file, c, "written as %s", (const char *)out.data);
            return 1;
        }
    }
    return 0;
}

static int check_batch(const char *file, weir_bytes c) {
    recording = true;
    case_states = weir_str("[]");
    open_operator();
    exports_weir_operator_guest_batch_t ret = {0};
    exports_weir_operator_guest_error_t err = {0};
    bool ok;
    weir_bytes want;
    weir_json_array_begin(&seen);
    if (has(c, "batch")) {
        weir_bytes b = field(c, "batch");
        exports_weir_operator_guest_batch_t input = {0};
        unhex(field(b, "data"), &input.data.ptr, &input.data.len);
        weir_bytes kl = field(b, "key_lens"), vl = field(b, "value_lens"), ts = field(b, "timestamps");
        size_t at, i;
        weir_bytes e;
        input.key_lens.len = count(kl);
        input.key_lens.ptr = malloc((input.key_lens.len + 1) * sizeof(int32_t));
        for (at = 0, i = 0; weir_json_next(kl, &at, &e); i++) input.key_lens.ptr[i] = (int32_t)i64(e);
        input.value_lens.len = count(vl);
        input.value_lens.ptr = malloc((input.value_lens.len + 1) * sizeof(uint32_t));
        for (at = 0, i = 0; weir_json_next(vl, &at, &e); i++) {
            uint64_t u = 0;
            weir_json_read_u64(e, &u);
            input.value_lens.ptr[i] = (uint32_t)u;
        }
        input.timestamps.len = count(ts);
        input.timestamps.ptr = malloc((input.timestamps.len + 1) * sizeof(int64_t));
        for (at = 0, i = 0; weir_json_next(ts, &at, &e); i++) input.timestamps.ptr[i] = i64(e);
        ok = exports_weir_operator_guest_process(&input, &ret, &err);
        want = field(c, "events");
    } else {
        weir_bytes t = field(c, "timers");
        exports_weir_operator_guest_timers_t fired = {0};
        fired.domain = (weir_operator_types_time_domain_t)domain_of(field(t, "domain"));
        weir_bytes keys = field(t, "keys");
        unhex(field(keys, "data"), &fired.keys.data.ptr, &fired.keys.data.len);
        weir_bytes lens = field(keys, "lens"), ts = field(t, "timestamps");
        size_t at, i;
        weir_bytes e;
        fired.keys.lens.len = count(lens);
        fired.keys.lens.ptr = malloc((fired.keys.lens.len + 1) * sizeof(int32_t));
        for (at = 0, i = 0; weir_json_next(lens, &at, &e); i++) fired.keys.lens.ptr[i] = (int32_t)i64(e);
        fired.timestamps.len = count(ts);
        fired.timestamps.ptr = malloc((fired.timestamps.len + 1) * sizeof(int64_t));
        for (at = 0, i = 0; weir_json_next(ts, &at, &e); i++) fired.timestamps.ptr[i] = i64(e);
        ok = exports_weir_operator_guest_on_timer(&fired, &ret, &err);
        want = field(c, "fired");
    }
    weir_json_array_end(&seen);
    weir_bytes error = field(c, "error");
    weir_buf got = {0};
    result_json(&got, ok, &ret, &err);
    weir_buf_append(&got, "", 1);
    if (error.ptr) {
        weir_buf e = {0};
        weir_json_object_begin(&e);
        weir_json_key(&e, "fatal");
        weir_buf_append(&e, error.ptr, error.len);
        weir_json_object_end(&e);
        if (!same_json(weir_str((const char *)got.data), weir_buf_bytes(&e))) {
            fail_case(file, c, "returned %s", (const char *)got.data);
            return 1;
        }
        return 0;
    }
    if (!ok) {
        fail_case(file, c, "failed: %s", (const char *)got.data);
        return 1;
    }
    if (!same_json(weir_buf_bytes(&seen), want)) {
        weir_buf_append(&seen, "", 1);
        fail_case(file, c, "saw %s", (const char *)seen.data);
        return 1;
    }
    return 0;
}

static int check_calls(const char *file, weir_bytes c) {
    weir_bytes h = field(c, "host");
    if (h.ptr) {
        weir_buf state = {0}, k = {0}, m = {0}, v = {0};
        weir_bytes kinds[3] = {field(h, "value"), field(h, "map"), field(h, "list")};
        for (int kind = 0; kind < 3; kind++) {
            if (!kinds[kind].ptr) continue;
            size_t at = 0;
            weir_bytes states;
            while (weir_json_next_field(kinds[kind], &at, &state, &states)) {
                size_t i = 0;
                weir_bytes e;
                while (weir_json_next(states, &i, &e)) {
                    size_t j = 0;
                    weir_bytes a, b, d;
                    weir_json_next(e, &j, &a);
                    weir_json_next(e, &j, &b);
                    text(a, &k);
                    if (kind == 0) {
                        text(b, &v);
                        host_put_value(weir_buf_bytes(&state), weir_buf_bytes(&k), weir_buf_bytes(&v));
                    } else if (kind == 1) {
                        weir_json_next(e, &j, &d);
                        text(b, &m);
                        text(d, &v);
                        host_put_map(weir_buf_bytes(&state), weir_buf_bytes(&k), weir_buf_bytes(&m),
                                     weir_buf_bytes(&v));
                    } else {
                        size_t l = 0;
                        while (weir_json_next(b, &l, &d)) {
                            text(d, &v);
                            host_add_list(weir_buf_bytes(&state), weir_buf_bytes(&k), weir_buf_bytes(&v));
                        }
                    }
                }
            }
        }
        if (has(h, "watermark")) host_set_watermark(i64(field(h, "watermark")));
    }
    case_states = has(c, "states") ? field(c, "states") : weir_str("[]");
    open_operator();
    weir_buf calls = {0};
    host_take_calls(&calls);
    size_t at = 0;
    weir_bytes step;
    for (int n = 1; weir_json_next(field(c, "steps"), &at, &step); n++) {
        char where[32];
        snprintf(where, sizeof where, "step %d: ", n);
        prefetch_ops = field(step, "prefetch");
        weir_bytes on_timer = field(step, "on_timer");
        items = on_timer.ptr ? field(on_timer, "timers") : field(step, "process");
        next_item = 0;
        mismatches.len = 0;
        exports_weir_operator_guest_batch_t ret = {0};
        exports_weir_operator_guest_error_t err = {0};
        bool ok = on_timer.ptr ? call_on_timer(on_timer, items, &ret, &err)
                               : call_process(items, &ret, &err);
        if (mismatches.len) {
            weir_buf_append(&mismatches, "", 1);
            fprintf(stderr, "%s", where);
            fail_case(file, c, "%s", (const char *)mismatches.data);
            return 1;
        }
        calls.len = 0;
        host_take_calls(&calls);
        if (!same_json(weir_buf_bytes(&calls), field(step, "calls"))) {
            weir_buf_append(&calls, "", 1);
            fprintf(stderr, "%s", where);
            fail_case(file, c, "the host saw %s", (const char *)calls.data);
            return 1;
        }
        weir_buf got = {0};
        result_json(&got, ok, &ret, &err);
        if (!same_json(weir_buf_bytes(&got), field(step, "result"))) {
            weir_buf_append(&got, "", 1);
            fprintf(stderr, "%s", where);
            fail_case(file, c, "returned %s", (const char *)got.data);
            return 1;
        }
        weir_buf_free(&got);
    }
    return 0;
}

static int check_migrate(const char *file, weir_bytes c) {
    weir_bytes m = field(c, "call");
    weir_buf state = {0};
    text(field(m, "state"), &state);
    operator_string_t name = {state.len ? state.data : NULL, state.len};
    exports_weir_operator_guest_blobs_t values = {0};
    if (has(m, "blobs")) {
        weir_bytes b = field(m, "blobs"), lens = field(b, "lens"), e;
        unhex(field(b, "data"), &values.data.ptr, &values.data.len);
        values.lens.len = count(lens);
        values.lens.ptr = malloc((values.lens.len + 1) * sizeof(int32_t));
        size_t at = 0, i = 0;
        while (weir_json_next(lens, &at, &e)) values.lens.ptr[i++] = (int32_t)i64(e);
    } else {
        weir_bytes list = field(m, "values"), e;
        weir_buf data = {0}, s = {0};
        values.lens.len = count(list);
        values.lens.ptr = malloc((values.lens.len + 1) * sizeof(int32_t));
        size_t at = 0, i = 0;
        while (weir_json_next(list, &at, &e)) {
            if (is_null(e)) {
                values.lens.ptr[i++] = -1;
                continue;
            }
            text(e, &s);
            weir_buf_append(&data, s.data, s.len);
            values.lens.ptr[i++] = (int32_t)s.len;
        }
        values.data = (operator_list_u8_t){data.len ? data.data : NULL, data.len};
        weir_buf_free(&s);
    }
    exports_weir_operator_guest_blobs_t ret = {0};
    exports_weir_operator_guest_migrate_error_t err = {0};
    bool ok = exports_weir_operator_guest_migrate(&name, (uint32_t)i64(field(m, "from_version")),
                                                  &values, &ret, &err);
    weir_buf got = {0};
    weir_json_object_begin(&got);
    if (ok) {
        weir_json_key(&got, "values");
        weir_json_array_begin(&got);
        size_t at = 0;
        for (size_t i = 0; i < ret.lens.len; i++) {
            if (ret.lens.ptr[i] < 0) {
                weir_json_null(&got);
                continue;
            }
            weir_json_string(&got, (weir_bytes){ret.data.ptr + at, (size_t)ret.lens.ptr[i]});
            at += (size_t)ret.lens.ptr[i];
        }
        weir_json_array_end(&got);
    } else {
        weir_json_key(&got, "refused");
        weir_json_object_begin(&got);
        weir_json_key(&got, "index");
        weir_json_u64(&got, err.index);
        weir_json_key(&got, "message");
        weir_json_string(&got, (weir_bytes){err.message.ptr, err.message.len});
        weir_json_object_end(&got);
    }
    weir_json_object_end(&got);
    if (!same_json(weir_buf_bytes(&got), field(c, "result"))) {
        weir_buf_append(&got, "", 1);
        fail_case(file, c, "returned %s", (const char *)got.data);
        return 1;
    }
    return 0;
}

/* Runs every case of `dir/file` in a child process of its own. */
static void run_file(const char *dir, const char *file, int (*check_case)(const char *, weir_bytes)) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    weir_buf all = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) weir_buf_append(&all, chunk, n);
    fclose(f);
    weir_buf_append(&all, "", 1);
    char *line = (char *)all.data;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        weir_bytes c = weir_str(line);
        if (c.len > 0) {
            /* Skipped: floats (the C SDK has none), and an operator
             * without migrate (this one is a constant that has one). */
            bool is_float = false, migrates = true;
            weir_json_read_bool(field(c, "float"), &is_float);
            weir_json_read_bool(field(c, "migrate"), &migrates);
            if (is_float || !migrates) {
                skipped++;
            } else {
                fflush(stderr);
                pid_t child = fork();
                if (child == 0) _exit(check_case(file, c));
                int status = 0;
                waitpid(child, &status, 0);
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                    passed++;
                } else {
                    failures++;
                    if (!WIFEXITED(status)) fail_case(file, c, "%s", "crashed");
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    weir_buf_free(&all);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "sdk/vectors";
    run_file(dir, "json.jsonl", check_json);
    run_file(dir, "batch.jsonl", check_batch);
    run_file(dir, "state.jsonl", check_calls);
    run_file(dir, "reject.jsonl", check_calls);
    run_file(dir, "timers.jsonl", check_calls);
    run_file(dir, "migrate.jsonl", check_migrate);
    printf("C SDK: %d vectors passed, %d failed, %d skipped (floats, which the C SDK has none of, "
           "and an operator without migrate)\n",
           passed, failures, skipped);
    return failures ? 1 : 0;
}
