// keyed-count: value state `count` per key; emits each event's key with
// value = the running count as decimal text. No config. An event without a
// key is bad input (dead-letter).
package main

import "weir.dev/sdk/weir"

type keyedCount struct {
	count *weir.ValueState[uint64]
}

func (k *keyedCount) Process(ctx *weir.Context, e weir.Event, out *weir.Output) error {
	key, err := e.RequireKey()
	if err != nil {
		return err
	}
	n, _, err := k.count.Get(key)
	if err != nil {
		return err
	}
	n++
	k.count.Set(key, n)
	out.EmitUint(key, n, e.Timestamp)
	return nil
}

func init() {
	weir.Export(weir.Spec{
		Name:    "keyed-count",
		Version: "1.0.0",
		States:  []weir.StateSpec{weir.ValueSpec("count", 1)},
		Open: func(ctx *weir.Context) (weir.Operator, error) {
			count, err := weir.OpenValueState[uint64](ctx, "count")
			return &keyedCount{count: count}, err
		},
	})
}

func main() {} // required by Go; never called
