// windowed-sum: parses each value as an integer and sums it per key in
// event-time tumbling windows of `size_ms` milliseconds (config, required).
// A window [start, start + size_ms) fires when the watermark reaches its
// last millisecond: it emits one event with the key, value = the sum and
// timestamp = window end - 1. An event whose window has already fired (it
// is behind the watermark) is late and goes to the dead-letter output, as is
// a value that is not an integer or an event without a key.
// State: map state `sums` (window end -> running sum) per key.
package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"weir.dev/sdk/weir"
)

type windowedSum struct {
	size int64
	sums *weir.MapState[int64, int64]
}

// windowEnd is the end of the window holding timestamp (negative ones too).
func (w *windowedSum) windowEnd(timestamp int64) int64 {
	rem := timestamp % w.size
	if rem < 0 {
		rem += w.size
	}
	return timestamp - rem + w.size
}

// Prefetch reads the sums of every event's window in one call to the host.
func (w *windowedSum) Prefetch(ctx *weir.Context, events []weir.Event) error {
	var keys [][]byte
	var ends []int64
	for _, e := range events {
		if e.HasKey {
			keys = append(keys, e.Key)
			ends = append(ends, w.windowEnd(e.Timestamp))
		}
	}
	return w.sums.Prefetch(keys, ends)
}

func (w *windowedSum) Process(ctx *weir.Context, e weir.Event, out *weir.Output) error {
	key, err := e.RequireKey()
	if err != nil {
		return err
	}
	text, err := e.ValueString()
	if err != nil {
		return err
	}
	value, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	if err != nil {
		return weir.BadInput("value is not an integer")
	}
	end := w.windowEnd(e.Timestamp)
	watermark := ctx.Watermark()
	if end-1 <= watermark {
		return weir.BadInputf("late event: its window [%d, %d) closed at watermark %d", end-w.size, end, watermark)
	}
	sum, open, err := w.sums.Get(key, end)
	if err != nil {
		return err
	}
	if value > 0 && sum > math.MaxInt64-value || value < 0 && sum < math.MinInt64-value {
		return weir.BadInput("the window's sum overflows 64 bits")
	}
	w.sums.Put(key, end, sum+value)
	// The window's timer is set once, by the event that opens the window.
	if !open {
		ctx.RegisterTimer(weir.EventTime, key, end-1)
	}
	return nil
}

// PrefetchTimers reads the sums of every fired window in one call to the host.
func (w *windowedSum) PrefetchTimers(ctx *weir.Context, timers []weir.Timer) error {
	var keys [][]byte
	var ends []int64
	for _, t := range timers {
		if t.HasKey {
			keys = append(keys, t.Key)
			ends = append(ends, t.Timestamp+1)
		}
	}
	return w.sums.Prefetch(keys, ends)
}

func (w *windowedSum) OnTimer(ctx *weir.Context, t weir.Timer, out *weir.Output) error {
	if !t.HasKey {
		return nil
	}
	end := t.Timestamp + 1
	sum, ok, err := w.sums.Get(t.Key, end)
	if err != nil || !ok {
		return err
	}
	out.EmitInt(t.Key, sum, end-1)
	w.sums.Remove(t.Key, end)
	return nil
}

func init() {
	weir.Export(weir.Spec{
		Name:    "windowed-sum",
		Version: "1.0.0",
		States:  []weir.StateSpec{weir.MapSpec("sums", 1)},
		Open: func(ctx *weir.Context) (weir.Operator, error) {
			size, err := ctx.Config().RequireInt("size_ms")
			if err != nil {
				return nil, err
			}
			if size <= 0 {
				return nil, fmt.Errorf("config `size_ms` must be positive, found %d", size)
			}
			sums, err := weir.OpenMapState[int64, int64](ctx, "sums")
			return &windowedSum{size: size, sums: sums}, err
		},
	})
}

func main() {} // required by Go; never called
