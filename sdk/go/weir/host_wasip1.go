package weir

// The host's imports through the bindings that `wit-bindgen go` generates
// into internal/wit at build time (see host.go).

import (
	"errors"

	"weir.dev/sdk/internal/wit/imports/weir_operator_logging"
	"weir.dev/sdk/internal/wit/imports/weir_operator_state"
	"weir.dev/sdk/internal/wit/imports/weir_operator_timers"
	"weir.dev/sdk/internal/wit/imports/weir_operator_types"
)

func init() { imports = witImports{} }

func (b blobs) wit() weir_operator_types.Blobs {
	return weir_operator_types.Blobs{Data: b.data, Lens: b.lens}
}

func fromWit(b weir_operator_types.Blobs) blobs { return blobs{data: b.Data, lens: b.Lens} }

func witDomain(d TimeDomain) weir_operator_types.TimeDomain {
	if d == ProcessingTime {
		return weir_operator_types.TimeDomain_ProcessingTime
	}
	return weir_operator_types.TimeDomain_EventTime
}

type witImports struct{}

func (witImports) openValueState(name string) (valueHandle, error) {
	r := weir_operator_state.ValueStateOpen(name)
	if r.IsErr() {
		return nil, errors.New(r.Err())
	}
	return witValueState{r.Ok()}, nil
}

func (witImports) openMapState(name string) (mapHandle, error) {
	r := weir_operator_state.MapStateOpen(name)
	if r.IsErr() {
		return nil, errors.New(r.Err())
	}
	return witMapState{r.Ok()}, nil
}

func (witImports) openListState(name string) (listHandle, error) {
	r := weir_operator_state.ListStateOpen(name)
	if r.IsErr() {
		return nil, errors.New(r.Err())
	}
	return witListState{r.Ok()}, nil
}

func (witImports) registerTimers(domain TimeDomain, keys blobs, timestamps []int64) {
	weir_operator_timers.RegisterMany(witDomain(domain), keys.wit(), timestamps)
}

func (witImports) deleteTimers(domain TimeDomain, keys blobs, timestamps []int64) {
	weir_operator_timers.DeleteMany(witDomain(domain), keys.wit(), timestamps)
}

func (witImports) currentWatermark() int64 { return weir_operator_timers.CurrentWatermark() }

func (witImports) processingTime() int64 { return weir_operator_timers.ProcessingTime() }

func (witImports) log(level Level, message string) {
	l := weir_operator_types.Level_Info
	switch level {
	case LevelTrace:
		l = weir_operator_types.Level_Trace
	case LevelDebug:
		l = weir_operator_types.Level_Debug
	case LevelWarn:
		l = weir_operator_types.Level_Warn
	case LevelError:
		l = weir_operator_types.Level_Error
	}
	weir_operator_logging.Log(l, message)
}

type witValueState struct {
	h *weir_operator_state.ValueState
}

func (s witValueState) getMany(keys blobs) blobs { return fromWit(s.h.GetMany(keys.wit())) }

func (s witValueState) putMany(keys, values blobs) { s.h.PutMany(keys.wit(), values.wit()) }

type witMapState struct{ h *weir_operator_state.MapState }

func (s witMapState) getMany(keys, mapKeys blobs) blobs {
	return fromWit(s.h.GetMany(keys.wit(), mapKeys.wit()))
}

func (s witMapState) putMany(keys, mapKeys, values blobs) {
	s.h.PutMany(keys.wit(), mapKeys.wit(), values.wit())
}

func (s witMapState) entries(key []byte) (blobs, blobs) {
	mks, values := s.h.Entries(key)
	return fromWit(mks), fromWit(values)
}

func (s witMapState) clear(key []byte) { s.h.Clear(key) }

type witListState struct {
	h *weir_operator_state.ListState
}

func (s witListState) get(key []byte) blobs { return fromWit(s.h.Get(key)) }

func (s witListState) addMany(keys, values blobs) { s.h.AddMany(keys.wit(), values.wit()) }

func (s witListState) update(key []byte, values blobs) { s.h.Update(key, values.wit()) }
