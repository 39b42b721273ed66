/*
 * keyed-count: value state `count` per key; emits each event's key with
 * `value` = the running count as decimal text. No config. An event without
 * a key is bad input (dead-letter).
 */
#include "weir.h"

static weir_value_state *count;

static weir_status count_open(void) {
    count = weir_value_state_open("count");
    return count ? WEIR_OK : WEIR_FATAL;
}

static weir_status count_process(const weir_event *event, weir_output *out) {
    if (!event->key.ptr) return weir_bad_input("event has no key");
    uint64_t n = 0;
    weir_value_get_u64(count, event->key, &n);
    n++;
    weir_value_put_u64(count, event->key, n);
    char text[WEIR_INT_BUF];
    weir_emit(out, event->key, weir_utoa(text, n), event->timestamp);
    return WEIR_OK;
}

WEIR_OPERATOR(
    .name = "keyed-count",
    .version = "1.0.0",
    .states = {WEIR_VALUE_STATE("count", 1)},
    .open = count_open,
    .process = count_process,
);
