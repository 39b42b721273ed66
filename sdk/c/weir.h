/*
 * weir.h: write weir stream operators in C.
 *
 * An operator is one C file that includes this header and describes itself
 * with WEIR_OPERATOR: its name, version, declared states and callbacks.
 *
 *     #include "weir.h"
 *
 *     static weir_value_state *count;
 *
 *     static weir_status count_open(void) {
 *         count = weir_value_state_open("count");
 *         return count ? WEIR_OK : WEIR_FATAL;
 *     }
 *
 *     static weir_status count_process(const weir_event *event, weir_output *out) {
 *         if (!event->key.ptr) return weir_bad_input("event has no key");
 *         uint64_t n = 0;
 *         weir_value_get_u64(count, event->key, &n);
 *         weir_value_put_u64(count, event->key, ++n);
 *         char text[WEIR_INT_BUF];
 *         weir_emit(out, event->key, weir_utoa(text, n), event->timestamp);
 *         return WEIR_OK;
 *     }
 *
 *     WEIR_OPERATOR(
 *         .name = "keyed-count",
 *         .version = "1.0.0",
 *         .states = { WEIR_VALUE_STATE("count", 1) },
 *         .open = count_open,
 *         .process = count_process,
 *     );
 *
 * Build it with `weir build DIR`.
 *
 * One instance of the operator runs per subtask, so module-level variables
 * (like `count` above) are the operator's fields. Only declared state
 * survives restarts and logic swaps: rebuild everything else in `open`.
 *
 * State and the component boundary. State lives in the host. The handles
 * here cache it for the length of one call (one batch, or one group of fired
 * timers): the first read of a value state in a call fetches the values of
 * every key of the call in one host call, map reads announced with
 * weir_map_prefetch are fetched together, and every write and timer change is
 * buffered and sent in one host call per state when the call ends.
 *
 * Encoding. Values (and the user keys of a map state) are JSON texts in the
 * compact canonical form of sdk/ENCODING.md, shared by every weir SDK, so a
 * savepoint taken with one language's build restores into another's. The
 * typed helpers (_i64, _u64) write and read JSON integers; weir_json_* write
 * and read strings, objects and arrays. The key a state is kept under is raw
 * bytes (normally the event key).
 *
 * Errors. Callbacks return a weir_status. weir_bad_input() rejects the
 * current event (it goes to the dead-letter output with the message and the
 * job goes on; state written before it is kept, so validate first);
 * weir_fatal() fails the job (it restarts from its last checkpoint). A state
 * value that does not decode as the type asked for makes the current call
 * fail fatally once the callback returns.
 *
 * Lifetimes. Every weir_bytes the SDK hands out (event keys and values,
 * state values, config) is valid until the current callback returns, unless
 * said otherwise; copy what must live longer.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- basics */

/* A byte string that the holder does not own. For keys, ptr == NULL means
 * "no key" (an empty key has a non-NULL ptr and len 0). */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} weir_bytes;

/* The absent key. */
#define WEIR_NO_KEY ((weir_bytes){NULL, 0})

/* A NUL-terminated string as bytes (without the NUL). */
weir_bytes weir_str(const char *s);

/* How a callback ended. */
typedef enum {
    WEIR_OK = 0,
    /* The current event is bad: see weir_bad_input. */
    WEIR_BAD_INPUT = 1,
    /* The job cannot go on: see weir_fatal. */
    WEIR_FATAL = 2,
} weir_status;

/* Returns the status of `expr` from the current function if it is not WEIR_OK. */
#define WEIR_TRY(expr)                                                         \
    do {                                                                       \
        weir_status weir_try_status_ = (expr);                                 \
        if (weir_try_status_ != WEIR_OK) return weir_try_status_;              \
    } while (0)

/* Records a bad-input message and returns WEIR_BAD_INPUT. The messages of
 * weir_bad_input, weir_fatal and weir_log are printf-style, formatted by the
 * SDK's own small printf: flags, width, precision, and the conversions
 * d i u x X o c s p % with lengths hh h l ll z j t; floating-point
 * conversions print `?` (format floats with snprintf into a buffer and pass
 * it as %s, at the cost of linking libc's stdio). */
weir_status weir_bad_input(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Records a fatal message (printf-style) and returns WEIR_FATAL. From `open`,
 * the message is the error the job fails with. */
weir_status weir_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer, owned by whoever declared it: start it as
 * `weir_buf b = {0};` and release it with weir_buf_free. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} weir_buf;

void weir_buf_append(weir_buf *b, const void *data, size_t len);
void weir_buf_free(weir_buf *b);
/* The bytes written so far (valid until the buffer is changed or freed). */
weir_bytes weir_buf_bytes(const weir_buf *b);

/* Room for the decimal text of any 64-bit integer, with a NUL. */
#define WEIR_INT_BUF 24

/* Writes the decimal text of `v` (NUL-terminated) into `buf` and returns it
 * as bytes. It is also `v` as a JSON integer, e.g. a map state's user key. */
weir_bytes weir_itoa(char buf[WEIR_INT_BUF], int64_t v);
weir_bytes weir_utoa(char buf[WEIR_INT_BUF], uint64_t v);

/* Parses `text` exactly like Rust's `i64::from_str`: an optional `+` or `-`,
 * then one or more ASCII digits, within range; nothing else (no whitespace).
 * Returns false if it does not parse. */
bool weir_parse_i64(weir_bytes text, int64_t *out);

/* `text` without leading and trailing Unicode White_Space (as Rust's
 * `str::trim`); `text` must be UTF-8. */
weir_bytes weir_trim(weir_bytes text);

/* Whether `text` is valid UTF-8. */
bool weir_is_utf8(weir_bytes text);

/* ---------------------------------------------------------------- events */

/* One event. */
typedef struct {
    /* The key; key.ptr == NULL if the event has none. */
    weir_bytes key;
    /* The value. */
    weir_bytes value;
    /* Event time, ms since the Unix epoch. */
    int64_t timestamp;
} weir_event;

/* The two clocks a timer can follow. */
typedef enum {
    /* Fires when the event-time watermark reaches the timer's time. */
    WEIR_EVENT_TIME = 0,
    /* Fires when the wall clock reaches the timer's time. */
    WEIR_PROCESSING_TIME = 1,
} weir_time_domain;

/* A timer that fired. */
typedef struct {
    /* The key it was registered for (ptr == NULL: none). */
    weir_bytes key;
    /* The time it was registered for. */
    int64_t timestamp;
    weir_time_domain domain;
} weir_timer;

/* The events a call emits (opaque). */
typedef struct weir_output weir_output;

/* Emits an event with `key` (WEIR_NO_KEY for none), `value` and `timestamp`. */
void weir_emit(weir_output *out, weir_bytes key, weir_bytes value, int64_t timestamp);

/* Emits `event` unchanged. */
void weir_forward(weir_output *out, const weir_event *event);

/* The number of events emitted so far in this call. */
size_t weir_output_len(const weir_output *out);

/* ---------------------------------------------------------------- the operator */

/* The kinds of declared state. */
typedef enum {
    WEIR_VALUE = 0,
    WEIR_MAP = 1,
    WEIR_LIST = 2,
} weir_state_kind;

/* A declared state: name, kind and schema version of its values. */
typedef struct {
    const char *name;
    weir_state_kind kind;
    uint32_t version;
} weir_state_spec;

#define WEIR_VALUE_STATE(name, version) {(name), WEIR_VALUE, (version)}
#define WEIR_MAP_STATE(name, version) {(name), WEIR_MAP, (version)}
#define WEIR_LIST_STATE(name, version) {(name), WEIR_LIST, (version)}

/* The most states an operator can declare. */
#define WEIR_MAX_STATES 32

/* What an operator is: fill it in with WEIR_OPERATOR. Only `name`, `version`
 * and `process` are required. */
typedef struct {
    /* Name of the logic, e.g. "keyed-count". */
    const char *name;
    /* Version of the logic, e.g. "1.0.0". */
    const char *version;
    /* The declared states, ended by the first entry without a name. */
    weir_state_spec states[WEIR_MAX_STATES];

    /* Once per subtask before anything else: read the config, open state
     * handles. A status other than WEIR_OK fails the job with the message
     * recorded by weir_fatal (or by the call that failed). */
    weir_status (*open)(void);

    /* Called with every event of a batch before `process` sees them, to
     * announce state reads (weir_map_prefetch) so they are fetched together. */
    weir_status (*prefetch)(const weir_event *events, size_t count);

    /* Handles one event. */
    weir_status (*process)(const weir_event *event, weir_output *out);

    /* Called with every timer that fires together before `on_timer` sees them. */
    weir_status (*prefetch_timers)(const weir_timer *timers, size_t count);

    /* Handles a timer that fired (one registered with weir_register_timer).
     * A bad input here fails the job. */
    weir_status (*on_timer)(const weir_timer *timer, weir_output *out);

    /* Converts one stored value of state `state` from schema version
     * `from_version` to the declared version, writing the new value into
     * `out` (empty on entry). Called while a checkpoint or savepoint of an
     * older version is restored, before `open`, for every value of a value
     * state, every value of a map state and every element of a list state;
     * it must not use state or timers. A status other than WEIR_OK refuses
     * the value with the recorded message. Without it, every migration is
     * refused. */
    weir_status (*migrate)(const char *state, uint32_t from_version, weir_bytes value,
                           weir_buf *out);
} weir_definition;

/* Defines the operator of this component (once per component). */
#define WEIR_OPERATOR(...) const weir_definition weir_the_operator = {__VA_ARGS__}

extern const weir_definition weir_the_operator;

/* ---------------------------------------------------------------- the subtask */

/* Where a subtask runs. Strings are NUL-terminated and live as long as the
 * instance. */
typedef struct {
    /* The operator ID in the job. */
    const char *operator_id;
    /* Index of this subtask, from 0. */
    uint32_t subtask;
    /* Number of subtasks of the operator. */
    uint32_t parallelism;
    /* Number of key groups of the job. */
    uint32_t max_parallelism;
    /* How many times the job has been restarted after a failure (0 at first). */
    uint32_t attempt;
} weir_task_info;

/* Where this subtask runs (valid from `open` on). */
const weir_task_info *weir_task(void);

/* The operator's `config` entry `name` from the job file, NUL-terminated, or
 * NULL if it is not set. Lives as long as the instance. */
const char *weir_config(const char *name);

/* The number of config entries, and entry `i` (sorted by name). */
size_t weir_config_count(void);
void weir_config_at(size_t i, const char **name, const char **value);

/* Config entry `name` as an integer: its text, trimmed, parsed as by
 * weir_parse_i64. WEIR_FATAL with the message "config `NAME` is required" if
 * unset, or "config `NAME` = \"TEXT\" is not valid: ..." if it does not parse
 * (the messages of the Rust SDK). */
weir_status weir_config_require_i64(const char *name, int64_t *out);

/* Like weir_config_require_i64, but `fallback` if the entry is unset. */
weir_status weir_config_i64_or(const char *name, int64_t fallback, int64_t *out);

/* Registers a timer for `key` (WEIR_NO_KEY for none) at `timestamp` (ms) in
 * `domain`; `on_timer` is called when it fires. Registering the same (key,
 * time) again keeps one timer. Sent to the host when the call ends. */
void weir_register_timer(weir_time_domain domain, weir_bytes key, int64_t timestamp);

/* Deletes the timer for `key` at `timestamp` in `domain`, if there is one. */
void weir_delete_timer(weir_time_domain domain, weir_bytes key, int64_t timestamp);

/* The current event-time watermark (ms), INT64_MIN before the first one.
 * Events at or behind it are late. Read once per call. */
int64_t weir_watermark(void);

/* The wall clock, ms since the Unix epoch, as processing-time timers see it. */
int64_t weir_processing_time(void);

/* ---------------------------------------------------------------- logging */

typedef enum {
    WEIR_TRACE = 0,
    WEIR_DEBUG = 1,
    WEIR_INFO = 2,
    WEIR_WARN = 3,
    WEIR_ERROR = 4,
} weir_level;

/* Logs a printf-style message (see weir_bad_input) into the host's log,
 * tagged with the operator ID and subtask. (stdout and stderr go to the
 * host's log too.) */
void weir_log(weir_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define weir_log_trace(...) weir_log(WEIR_TRACE, __VA_ARGS__)
#define weir_log_debug(...) weir_log(WEIR_DEBUG, __VA_ARGS__)
#define weir_log_info(...) weir_log(WEIR_INFO, __VA_ARGS__)
#define weir_log_warn(...) weir_log(WEIR_WARN, __VA_ARGS__)
#define weir_log_error(...) weir_log(WEIR_ERROR, __VA_ARGS__)

/* ---------------------------------------------------------------- value state */

/* A declared value state: one value per key. */
typedef struct weir_value_state weir_value_state;

/* Opens the declared value state `name` (from `open`; opening it again gives
 * the same handle). NULL on error, with a fatal message recorded:
 * `return WEIR_FATAL`. */
weir_value_state *weir_value_state_open(const char *name);

/* The value stored for `key` as JSON bytes: false if there is none. */
bool weir_value_get(weir_value_state *s, weir_bytes key, weir_bytes *json);
/* Stores the JSON text `json` for `key` (it is copied). */
void weir_value_put(weir_value_state *s, weir_bytes key, weir_bytes json);
/* Removes the value of `key`. */
void weir_value_remove(weir_value_state *s, weir_bytes key);

/* The value of `key` as an integer: false if there is none (then *out is
 * unchanged) or if it is not an integer of the type (then the call fails). */
bool weir_value_get_i64(weir_value_state *s, weir_bytes key, int64_t *out);
bool weir_value_get_u64(weir_value_state *s, weir_bytes key, uint64_t *out);
void weir_value_put_i64(weir_value_state *s, weir_bytes key, int64_t v);
void weir_value_put_u64(weir_value_state *s, weir_bytes key, uint64_t v);

/* ---------------------------------------------------------------- map state */

/* A declared map state: per key, a map from user keys (JSON) to values (JSON). */
typedef struct weir_map_state weir_map_state;

/* Opens the declared map state `name` (from `open`; opening it again gives
 * the same handle); NULL on error. */
weir_map_state *weir_map_state_open(const char *name);

/* Announces a read of (`key`, `map_key`) so that the reads announced in a
 * callback are fetched in one host call (use it from `prefetch`). */
void weir_map_prefetch(weir_map_state *m, weir_bytes key, weir_bytes map_key);

/* The value at user key `map_key` (JSON text, e.g. weir_itoa's) in the map
 * of `key`: false if there is none. */
bool weir_map_get(weir_map_state *m, weir_bytes key, weir_bytes map_key, weir_bytes *json);
/* Sets `map_key` in the map of `key` to the JSON text `json` (copied). */
void weir_map_put(weir_map_state *m, weir_bytes key, weir_bytes map_key, weir_bytes json);
/* Removes `map_key` from the map of `key`. */
void weir_map_remove(weir_map_state *m, weir_bytes key, weir_bytes map_key);

bool weir_map_get_i64(weir_map_state *m, weir_bytes key, weir_bytes map_key, int64_t *out);
void weir_map_put_i64(weir_map_state *m, weir_bytes key, weir_bytes map_key, int64_t v);

/* Every entry of the map of `key`, sorted by the stored user key: `count`
 * user keys and values, valid until the callback returns. */
typedef struct {
    const weir_bytes *map_keys;
    const weir_bytes *values;
    size_t count;
} weir_map_entries;
weir_map_entries weir_map_entries_of(weir_map_state *m, weir_bytes key);

/* Removes the whole map of `key`. */
void weir_map_clear(weir_map_state *m, weir_bytes key);

/* ---------------------------------------------------------------- list state */

/* A declared list state: per key, an ordered list of values (JSON). */
typedef struct weir_list_state weir_list_state;

/* Opens the declared list state `name` (from `open`; opening it again gives
 * the same handle); NULL on error. */
weir_list_state *weir_list_state_open(const char *name);

/* Appends the JSON text `json` to the list of `key` (buffered). */
void weir_list_add(weir_list_state *l, weir_bytes key, weir_bytes json);
void weir_list_add_i64(weir_list_state *l, weir_bytes key, int64_t v);

/* The whole list of `key`, oldest first: `count` values valid until the
 * callback returns. */
typedef struct {
    const weir_bytes *values;
    size_t count;
} weir_list_values;
weir_list_values weir_list_get(weir_list_state *l, weir_bytes key);

/* Replaces the list of `key` with `values` (none: removes it). */
void weir_list_update(weir_list_state *l, weir_bytes key, const weir_bytes *values,
                      size_t count);
/* Removes the list of `key`. */
void weir_list_clear(weir_list_state *l, weir_bytes key);

/* ---------------------------------------------------------------- JSON */

/* Writers: append one JSON item in the canonical form to `b`, with the comma
 * it needs after a previous sibling. An object is written as
 *   weir_json_object_begin(b); weir_json_key(b, "n"); weir_json_i64(b, 41);
 *   weir_json_object_end(b);                          -> {"n":41}
 * (Floats are not supported.) */
void weir_json_i64(weir_buf *b, int64_t v);
void weir_json_u64(weir_buf *b, uint64_t v);
void weir_json_bool(weir_buf *b, bool v);
void weir_json_null(weir_buf *b);
/* A string from UTF-8 bytes (raw UTF-8 kept, `"` `\` and controls escaped). */
void weir_json_string(weir_buf *b, weir_bytes utf8);
void weir_json_object_begin(weir_buf *b);
void weir_json_object_end(weir_buf *b);
void weir_json_array_begin(weir_buf *b);
void weir_json_array_end(weir_buf *b);
/* The name of the next field of an object. */
void weir_json_key(weir_buf *b, const char *name);

/* Readers: accept any valid JSON text (surrounding whitespace too). */
/* Whether `json` is one valid JSON text. */
bool weir_json_valid(weir_bytes json);
/* An integer (no fraction or exponent) within range. */
bool weir_json_read_i64(weir_bytes json, int64_t *out);
bool weir_json_read_u64(weir_bytes json, uint64_t *out);
bool weir_json_read_bool(weir_bytes json, bool *out);
/* A string, its decoded UTF-8 appended to `out`. */
bool weir_json_read_string(weir_bytes json, weir_buf *out);
/* The value of field `name` of the object `json`: false if `json` is not an
 * object or has no such field. */
bool weir_json_field(weir_bytes json, const char *name, weir_bytes *value);
/* Iterates an array: start with `*at = 0`; each call gives the next element
 * and returns false at the end (or if `json` is not an array). */
bool weir_json_next(weir_bytes json, size_t *at, weir_bytes *element);
/* Iterates the fields of an object in their order: start with `*at = 0`;
 * each call puts the next field's name, decoded, in `name` (replacing what
 * it held) and gives its value, and returns false at the end (or if `json`
 * is not an object). */
bool weir_json_next_field(weir_bytes json, size_t *at, weir_buf *name, weir_bytes *value);

#ifdef __cplusplus
}
#endif

#endif /* WEIR_H */
