// boom-go: a test operator. It counts events per key like keyed-count, but
// an event whose value is `boom` makes explode index past the end of a slice
// (a panic): the failure must name main.explode, the event's key and its offset.
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
	if string(e.Value) == "boom" {
		explode(key)
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
		Name:    "boom-go",
		Version: "1.0.0",
		States:  []weir.StateSpec{weir.ValueSpec("count", 1)},
		Open: func(ctx *weir.Context) (weir.Operator, error) {
			count, err := weir.OpenValueState[uint64](ctx, "count")
			return &keyedCount{count: count}, err
		},
	})
}

//go:noinline
func explode(key []byte) {
	var table []int
	_ = table[len(key)+5]
}

func main() {} // required by Go; never called
