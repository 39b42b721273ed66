/*
 * boom-c: a test operator. It counts events per key like keyed-count, but
 * an event whose value is `boom` makes `explode` trap: the failure must name
 * `explode`, the event's key and its offset.
 */
#include "weir.h"

static weir_value_state *count;

static weir_status count_open(void) {
    count = weir_value_state_open("count");
    return count ? WEIR_OK : WEIR_FATAL;
}

__attribute__((noinline)) static void explode(void) { __builtin_trap(); }

static weir_status count_process(const weir_event *event, weir_output *out) {
    if (!event->key.ptr) return weir_bad_input("event has no key");
    if (event->value.len == 4 && __builtin_memcmp(event->value.ptr, "boom", 4) == 0) explode();
    uint64_t n = 0;
    weir_value_get_u64(count, event->key, &n);
    n++;
    weir_value_put_u64(count, event->key, n);
    char text[WEIR_INT_BUF];
    weir_emit(out, event->key, weir_utoa(text, n), event->timestamp);
    return WEIR_OK;
}

WEIR_OPERATOR(
    .name = "boom-c",
    .version = "1.0.0",
    .states = {WEIR_VALUE_STATE("count", 1)},
    .open = count_open,
    .process = count_process,
);
