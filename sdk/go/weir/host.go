package weir

// What the SDK asks of the host: the imports of the WIT world (state,
// timers, logging), in the SDK's own flat types. In a component, imports
// is the generated bindings (host_wasip1.go); the tests of the shared
// vectors put a stand-in in its place, so that everything else in this
// package is plain Go that runs anywhere.

type hostImports interface {
	openValueState(name string) (valueHandle, error)
	openMapState(name string) (mapHandle, error)
	openListState(name string) (listHandle, error)
	registerTimers(domain TimeDomain, keys blobs, timestamps []int64)
	deleteTimers(domain TimeDomain, keys blobs, timestamps []int64)
	currentWatermark() int64
	processingTime() int64
	log(level Level, message string)
}

// valueHandle is a `value-state` resource.
type valueHandle interface {
	getMany(keys blobs) blobs
	putMany(keys, values blobs)
}

// mapHandle is a `map-state` resource.
type mapHandle interface {
	getMany(keys, mapKeys blobs) blobs
	putMany(keys, mapKeys, values blobs)
	entries(key []byte) (mapKeys, values blobs)
	clear(key []byte)
}

// listHandle is a `list-state` resource.
type listHandle interface {
	get(key []byte) blobs
	addMany(keys, values blobs)
	update(key []byte, values blobs)
}

// imports is the host, set when the package is initialised.
var imports hostImports

// batch is the WIT `batch` record: events in flat form.
type batch struct {
	data       []byte
	keyLens    []int32
	valueLens  []uint32
	timestamps []int64
}
