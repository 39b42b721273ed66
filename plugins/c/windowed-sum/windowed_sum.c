/*
 * windowed-sum: parses each value as an integer and sums it per key in
 * event-time tumbling windows of `size_ms` milliseconds (config, required).
 * A window [start, start + size_ms) fires when the watermark reaches its last
 * millisecond: it emits one event with the key, `value` = the sum and
 * `timestamp` = window end - 1. An event whose window has already fired (it is
 * behind the watermark) is late and goes to the dead-letter output, as is a
 * value that is not an integer or an event without a key.
 * State: map state `sums` (window end -> running sum) per key.
 */
#include "weir.h"

static int64_t size;
static weir_map_state *sums;

/* Two's-complement wrapping arithmetic, as Rust's release builds do. */
static int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t wrap_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }

/* The end of the window of `timestamp`: a multiple of `size`, negative times too. */
static int64_t window_end(int64_t timestamp) {
    int64_t rem = timestamp % size;
    if (rem < 0) rem += size; /* euclidean remainder */
    return wrap_add(wrap_sub(timestamp, rem), size);
}

static weir_status sum_open(void) {
    WEIR_TRY(weir_config_require_i64("size_ms", &size));
    if (size <= 0) return weir_fatal("config `size_ms` must be positive, found %lld", (long long)size);
    sums = weir_map_state_open("sums");
    return sums ? WEIR_OK : WEIR_FATAL;
}

/* Announces every (key, window) of the batch, so they are read in one host call. */
static weir_status sum_prefetch(const weir_event *events, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (!events[i].key.ptr) continue;
        char end[WEIR_INT_BUF];
        weir_map_prefetch(sums, events[i].key, weir_itoa(end, window_end(events[i].timestamp)));
    }
    return WEIR_OK;
}

static weir_status sum_process(const weir_event *event, weir_output *out) {
    (void)out;
    if (!event->key.ptr) return weir_bad_input("event has no key");
    if (!weir_is_utf8(event->value)) return weir_bad_input("value is not UTF-8 text");
    int64_t value;
    if (!weir_parse_i64(weir_trim(event->value), &value))
        return weir_bad_input("value is not an integer");

    int64_t end = window_end(event->timestamp);
    int64_t watermark = weir_watermark();
    if (wrap_sub(end, 1) <= watermark)
        return weir_bad_input("late event: its window [%lld, %lld) closed at watermark %lld",
                              (long long)wrap_sub(end, size), (long long)end, (long long)watermark);

    char end_key[WEIR_INT_BUF];
    weir_bytes map_key = weir_itoa(end_key, end);
    int64_t sum = 0;
    bool open = weir_map_get_i64(sums, event->key, map_key, &sum);
    if (__builtin_add_overflow(sum, value, &sum))
        return weir_bad_input("the window's sum overflows 64 bits");
    weir_map_put_i64(sums, event->key, map_key, sum);
    /* The window's timer is set once, by the event that opens the window. */
    if (!open) weir_register_timer(WEIR_EVENT_TIME, event->key, wrap_sub(end, 1));
    return WEIR_OK;
}

static weir_status sum_prefetch_timers(const weir_timer *timers, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (!timers[i].key.ptr) continue;
        char end[WEIR_INT_BUF];
        weir_map_prefetch(sums, timers[i].key, weir_itoa(end, wrap_add(timers[i].timestamp, 1)));
    }
    return WEIR_OK;
}

static weir_status sum_on_timer(const weir_timer *timer, weir_output *out) {
    if (!timer->key.ptr) return WEIR_OK;
    int64_t end = wrap_add(timer->timestamp, 1);
    char end_key[WEIR_INT_BUF];
    weir_bytes map_key = weir_itoa(end_key, end);
    int64_t sum;
    if (weir_map_get_i64(sums, timer->key, map_key, &sum)) {
        char text[WEIR_INT_BUF];
        weir_emit(out, timer->key, weir_itoa(text, sum), wrap_sub(end, 1));
        weir_map_remove(sums, timer->key, map_key);
    }
    return WEIR_OK;
}

WEIR_OPERATOR(
    .name = "windowed-sum",
    .version = "1.0.0",
    .states = {WEIR_MAP_STATE("sums", 1)},
    .open = sum_open,
    .prefetch = sum_prefetch,
    .process = sum_process,
    .prefetch_timers = sum_prefetch_timers,
    .on_timer = sum_on_timer,
);
