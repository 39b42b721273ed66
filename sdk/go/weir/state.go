package weir

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// StateKind is the kind of a declared state.
type StateKind uint8

const (
	// ValueKind: one value per key ([ValueState]).
	ValueKind StateKind = iota
	// MapKind: a map of user keys to values per key ([MapState]).
	MapKind
	// ListKind: an ordered list of values per key ([ListState]).
	ListKind
)

// String returns "Value", "Map" or "List".
func (k StateKind) String() string {
	switch k {
	case MapKind:
		return "Map"
	case ListKind:
		return "List"
	}
	return "Value"
}

// StateSpec declares a state: what Spec.States lists.
type StateSpec struct {
	// Name is unique within the operator.
	Name string
	// Kind is the kind of state.
	Kind StateKind
	// Version is the schema version of the stored values: raise it when
	// their shape changes, and convert old values in Spec.Migrate.
	Version uint32
}

// ValueSpec declares a value state called name at schema version.
func ValueSpec(name string, version uint32) StateSpec {
	return StateSpec{Name: name, Kind: ValueKind, Version: version}
}

// MapSpec declares a map state called name at schema version.
func MapSpec(name string, version uint32) StateSpec {
	return StateSpec{Name: name, Kind: MapKind, Version: version}
}

// ListSpec declares a list state called name at schema version.
func ListSpec(name string, version uint32) StateSpec {
	return StateSpec{Name: name, Kind: ListKind, Version: version}
}

// flusher is a state cache the context flushes at the end of every call.
type flusher interface {
	flush() error
}

// blobs builds the flat byte strings of the WIT `blobs` record.
type blobs struct {
	data []byte
	lens []int32
}

func (b *blobs) push(p []byte) {
	b.data = append(b.data, p...)
	b.lens = append(b.lens, int32(len(p)))
}

func (b *blobs) pushAbsent() { b.lens = append(b.lens, -1) }

func (b *blobs) reset() {
	b.data = b.data[:0]
	b.lens = b.lens[:0]
}

var errMalformedBlobs = errors.New("malformed blobs from the host")

// splitBlobs calls f with each part of b (nil, false for an absent one).
func splitBlobs(b blobs, f func(i int, part []byte, ok bool) error) error {
	at := 0
	for i, n := range b.lens {
		if n < 0 {
			if err := f(i, nil, false); err != nil {
				return err
			}
			continue
		}
		end := at + int(n)
		if end > len(b.data) {
			return Fatal(errMalformedBlobs.Error())
		}
		if err := f(i, b.data[at:end:end], true); err != nil {
			return err
		}
		at = end
	}
	return nil
}

func decodeState[T any](c *codec[T], state string, b []byte) (T, error) {
	v, err := c.decode(b)
	if err != nil {
		return v, Fatalf("state `%s` holds a value that does not decode as this type: %v", state, err)
	}
	return v, nil
}

func encodeError(state string, err error) error {
	return Fatalf("cannot encode a value of state `%s`: %v", state, err)
}

type valueSlot[T any] struct {
	key   string
	value T
	has   bool
	dirty bool
}

// ValueState is a declared value state: one value of type T per key.
//
// Reads and writes are cached for the length of one call; the first Get in a
// batch fetches the values of all the batch's keys in one call to the host.
// Open it with [OpenValueState].
type ValueState[T any] struct {
	name   string
	codec  codec[T]
	handle valueHandle
	// The keys of this call: index[key] is the key's slot.
	index      map[string]int32
	slots      []valueSlot[T]
	prefetched bool
	// Slot of each event (or timer) of the call, -1 for none.
	positions []int32
	request   blobs
	fetched   []int32
	keys      blobs
	values    blobs
}

// OpenValueState opens the declared value state name, holding values of
// type T. Opening it again gives the same handle (another T: an error).
func OpenValueState[T any](ctx *Context, name string) (*ValueState[T], error) {
	if err := ctx.checkDeclared(name, ValueKind); err != nil {
		return nil, err
	}
	if s, found, err := reopened[*ValueState[T]](ctx, name, ValueKind); found {
		return s, err
	}
	h, err := imports.openValueState(name)
	if err != nil {
		return nil, err
	}
	s := &ValueState[T]{name: name, codec: newCodec[T](), handle: h, index: map[string]int32{}}
	ctx.remember(name, s)
	return s, nil
}

// slot returns the slot of key, added if new (then true).
func (s *ValueState[T]) slot(key []byte) (int32, bool) {
	if i, ok := s.index[string(key)]; ok {
		return i, false
	}
	i := int32(len(s.slots))
	k := string(key)
	s.index[k] = i
	s.slots = append(s.slots, valueSlot[T]{key: k})
	return i, true
}

// find returns the slot of key, or -1: the current event's own key (the
// very same bytes) is found without hashing.
func (s *ValueState[T]) find(key []byte) int32 {
	if at := current.at; at >= 0 && at < len(s.positions) {
		if i := s.positions[at]; i >= 0 {
			cur := current.keys[at]
			if len(cur) == len(key) && (len(key) == 0 || unsafe.SliceData(cur) == unsafe.SliceData(key)) {
				return i
			}
		}
	}
	if i, ok := s.index[string(key)]; ok {
		return i
	}
	return -1
}

// fetch reads from the host the keys given that the cache does not hold
// yet; with batch, they are the call's keys, and each one's slot is noted.
func (s *ValueState[T]) fetch(keys [][]byte, has []bool, batch bool) error {
	s.request.reset()
	s.fetched = s.fetched[:0]
	for j, key := range keys {
		if !has[j] {
			if batch {
				s.positions = append(s.positions, -1)
			}
			continue
		}
		i, added := s.slot(key)
		if batch {
			s.positions = append(s.positions, i)
		}
		if added {
			s.request.push(key)
			s.fetched = append(s.fetched, i)
		}
	}
	if len(s.fetched) == 0 {
		return nil
	}
	got := s.handle.getMany(s.request)
	if len(got.lens) != len(s.fetched) {
		return Fatal(errMalformedBlobs.Error())
	}
	return splitBlobs(got, func(j int, part []byte, ok bool) error {
		if !ok {
			return nil
		}
		v, err := decodeState(&s.codec, s.name, part)
		if err != nil {
			return err
		}
		slot := &s.slots[s.fetched[j]]
		slot.value, slot.has = v, true
		return nil
	})
}

// Get returns the value stored for key, and whether there is one (if not,
// the zero T). A value read is shared with the cache: change it only to Set it.
func (s *ValueState[T]) Get(key []byte) (T, bool, error) {
	if !s.prefetched {
		s.prefetched = true
		if err := s.fetch(current.keys, current.has, true); err != nil {
			var zero T
			return zero, false, err
		}
	}
	i := s.find(key)
	if i < 0 {
		if err := s.fetch([][]byte{key}, []bool{true}, false); err != nil {
			var zero T
			return zero, false, err
		}
		i = s.index[string(key)]
	}
	slot := &s.slots[i]
	return slot.value, slot.has, nil
}

// Set stores value for key.
func (s *ValueState[T]) Set(key []byte, value T) { s.write(key, value, true) }

// Remove removes the value of key.
func (s *ValueState[T]) Remove(key []byte) {
	var zero T
	s.write(key, zero, false)
}

func (s *ValueState[T]) write(key []byte, value T, has bool) {
	i := s.find(key)
	if i < 0 {
		i, _ = s.slot(key)
	}
	slot := &s.slots[i]
	slot.value, slot.has, slot.dirty = value, has, true
}

func (s *ValueState[T]) flush() error {
	s.keys.reset()
	s.values.reset()
	var first error
	for i := range s.slots {
		slot := &s.slots[i]
		if !slot.dirty {
			continue
		}
		if slot.has {
			start := len(s.values.data)
			data, err := s.codec.encode(s.values.data, slot.value)
			if err != nil {
				s.values.data = s.values.data[:start]
				if first == nil {
					first = encodeError(s.name, err)
				}
				continue
			}
			s.values.data = data
			s.values.lens = append(s.values.lens, int32(len(data)-start))
		} else {
			s.values.pushAbsent()
		}
		s.keys.data = append(s.keys.data, slot.key...)
		s.keys.lens = append(s.keys.lens, int32(len(slot.key)))
	}
	if len(s.keys.lens) > 0 {
		s.handle.putMany(s.keys, s.values)
	}
	clear(s.index)
	clear(s.slots) // drop references to values
	s.slots = s.slots[:0]
	s.positions = s.positions[:0]
	s.prefetched = false
	return first
}

type mapSlot[V any] struct {
	// comp is the composite key: 4 bytes of key length, key, encoded user key.
	comp  string
	value V
	has   bool
	dirty bool
}

// MapState is a declared map state: per key, a map from user keys K to
// values V. Both are stored as JSON (a window end 1700000000000 as the bytes
// `1700000000000`).
//
// Reads are cached for the length of one call; batch them with Prefetch
// from a [Prefetcher] so that a batch crosses to the host once, not once per
// event. Writes are buffered and sent in one call when the call ends.
// Open it with [OpenMapState].
type MapState[K, V any] struct {
	name     string
	codec    codec[V]
	keyCodec codec[K]
	handle   mapHandle
	index    map[string]int32
	slots    []mapSlot[V]
	scratch  []byte
	// An error encoding a user key in Put or Remove, reported when the call ends.
	failed  error
	request [2]blobs
	fetched []int32
	out     [3]blobs
}

// OpenMapState opens the declared map state name, with user keys of type K
// and values of type V. Opening it again gives the same handle (other K, V:
// an error).
func OpenMapState[K, V any](ctx *Context, name string) (*MapState[K, V], error) {
	if err := ctx.checkDeclared(name, MapKind); err != nil {
		return nil, err
	}
	if s, found, err := reopened[*MapState[K, V]](ctx, name, MapKind); found {
		return s, err
	}
	h, err := imports.openMapState(name)
	if err != nil {
		return nil, err
	}
	s := &MapState[K, V]{name: name, codec: newCodec[V](), keyCodec: newCodec[K](), handle: h, index: map[string]int32{}}
	ctx.remember(name, s)
	return s, nil
}

// composite writes the composite key of (key, mapKey) into s.scratch.
func (s *MapState[K, V]) composite(key []byte, mapKey K) ([]byte, error) {
	b := binary.LittleEndian.AppendUint32(s.scratch[:0], uint32(len(key)))
	b = append(b, key...)
	b, err := s.keyCodec.encode(b, mapKey)
	s.scratch = b
	if err != nil {
		return nil, encodeError(s.name, err)
	}
	return b, nil
}

func splitComposite(comp string) (key, mapKey string) {
	n := binary.LittleEndian.Uint32([]byte(comp[:4]))
	return comp[4 : 4+n], comp[4+n:]
}

// Prefetch fetches, in one call to the host, the values of mapKeys[i] in the
// maps of keys[i] that the cache does not hold yet, so that the Gets of this
// call find them.
func (s *MapState[K, V]) Prefetch(keys [][]byte, mapKeys []K) error {
	if len(keys) != len(mapKeys) {
		return Fatal("MapState.Prefetch: keys and mapKeys differ in length")
	}
	s.request[0].reset()
	s.request[1].reset()
	s.fetched = s.fetched[:0]
	for j, key := range keys {
		comp, err := s.composite(key, mapKeys[j])
		if err != nil {
			return err
		}
		if _, ok := s.index[string(comp)]; ok {
			continue
		}
		i := int32(len(s.slots))
		c := string(comp)
		s.index[c] = i
		s.slots = append(s.slots, mapSlot[V]{comp: c})
		s.fetched = append(s.fetched, i)
		k, mk := splitComposite(c)
		s.request[0].data = append(s.request[0].data, k...)
		s.request[0].lens = append(s.request[0].lens, int32(len(k)))
		s.request[1].data = append(s.request[1].data, mk...)
		s.request[1].lens = append(s.request[1].lens, int32(len(mk)))
	}
	if len(s.fetched) == 0 {
		return nil
	}
	got := s.handle.getMany(s.request[0], s.request[1])
	if len(got.lens) != len(s.fetched) {
		return Fatal(errMalformedBlobs.Error())
	}
	return splitBlobs(got, func(j int, part []byte, ok bool) error {
		if !ok {
			return nil
		}
		v, err := decodeState(&s.codec, s.name, part)
		if err != nil {
			return err
		}
		slot := &s.slots[s.fetched[j]]
		slot.value, slot.has = v, true
		return nil
	})
}

// Get returns the value at mapKey in the map of key, and whether there is
// one (if not, the zero V).
func (s *MapState[K, V]) Get(key []byte, mapKey K) (V, bool, error) {
	var zero V
	comp, err := s.composite(key, mapKey)
	if err != nil {
		return zero, false, err
	}
	i, ok := s.index[string(comp)]
	if !ok {
		if err := s.Prefetch([][]byte{key}, []K{mapKey}); err != nil {
			return zero, false, err
		}
		i = int32(len(s.slots) - 1)
	}
	slot := &s.slots[i]
	return slot.value, slot.has, nil
}

// Contains reports whether the map of key has mapKey.
func (s *MapState[K, V]) Contains(key []byte, mapKey K) (bool, error) {
	_, ok, err := s.Get(key, mapKey)
	return ok, err
}

// Put sets mapKey in the map of key to value.
func (s *MapState[K, V]) Put(key []byte, mapKey K, value V) { s.write(key, mapKey, value, true) }

// Remove removes mapKey from the map of key.
func (s *MapState[K, V]) Remove(key []byte, mapKey K) {
	var zero V
	s.write(key, mapKey, zero, false)
}

func (s *MapState[K, V]) write(key []byte, mapKey K, value V, has bool) {
	comp, err := s.composite(key, mapKey)
	if err != nil {
		if s.failed == nil {
			s.failed = err
		}
		return
	}
	i, ok := s.index[string(comp)]
	if !ok {
		i = int32(len(s.slots))
		c := string(comp)
		s.index[c] = i
		s.slots = append(s.slots, mapSlot[V]{comp: c})
	}
	slot := &s.slots[i]
	slot.value, slot.has, slot.dirty = value, has, true
}

// Entries returns every entry of the map of key, sorted by the stored (JSON)
// user key. It sends the buffered writes first.
func (s *MapState[K, V]) Entries(key []byte) ([]MapEntry[K, V], error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	mks, values := s.handle.entries(key)
	var keys [][]byte
	if err := splitBlobs(mks, func(_ int, part []byte, ok bool) error {
		if ok {
			keys = append(keys, part)
		} else {
			keys = append(keys, nil)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var entries []MapEntry[K, V]
	err := splitBlobs(values, func(j int, part []byte, ok bool) error {
		if !ok || j >= len(keys) || keys[j] == nil {
			return nil
		}
		k, err := decodeState(&s.keyCodec, s.name, keys[j])
		if err != nil {
			return err
		}
		v, err := decodeState(&s.codec, s.name, part)
		if err != nil {
			return err
		}
		entries = append(entries, MapEntry[K, V]{Key: k, Value: v})
		return nil
	})
	return entries, err
}

// Clear removes the whole map of key. It sends the buffered writes first.
func (s *MapState[K, V]) Clear(key []byte) error {
	if err := s.flush(); err != nil {
		return err
	}
	s.handle.clear(key)
	return nil
}

// MapEntry is one entry of a map state.
type MapEntry[K, V any] struct {
	Key   K
	Value V
}

func (s *MapState[K, V]) flush() error {
	for j := range s.out {
		s.out[j].reset()
	}
	first := s.failed
	s.failed = nil
	for i := range s.slots {
		slot := &s.slots[i]
		if !slot.dirty {
			continue
		}
		vals := &s.out[2]
		if slot.has {
			start := len(vals.data)
			data, err := s.codec.encode(vals.data, slot.value)
			if err != nil {
				vals.data = vals.data[:start]
				if first == nil {
					first = encodeError(s.name, err)
				}
				continue
			}
			vals.data = data
			vals.lens = append(vals.lens, int32(len(data)-start))
		} else {
			vals.pushAbsent()
		}
		k, mk := splitComposite(slot.comp)
		s.out[0].data = append(s.out[0].data, k...)
		s.out[0].lens = append(s.out[0].lens, int32(len(k)))
		s.out[1].data = append(s.out[1].data, mk...)
		s.out[1].lens = append(s.out[1].lens, int32(len(mk)))
	}
	if len(s.out[0].lens) > 0 {
		s.handle.putMany(s.out[0], s.out[1], s.out[2])
	}
	clear(s.index)
	clear(s.slots)
	s.slots = s.slots[:0]
	return first
}

// ListState is a declared list state: per key, an ordered list of values
// of type T. Appends are buffered and sent in one call when the call ends.
// Open it with [OpenListState].
type ListState[T any] struct {
	name   string
	codec  codec[T]
	handle listHandle
	keys   blobs
	values blobs
}

// OpenListState opens the declared list state name, holding values of
// type T. Opening it again gives the same handle (another T: an error).
func OpenListState[T any](ctx *Context, name string) (*ListState[T], error) {
	if err := ctx.checkDeclared(name, ListKind); err != nil {
		return nil, err
	}
	if s, found, err := reopened[*ListState[T]](ctx, name, ListKind); found {
		return s, err
	}
	h, err := imports.openListState(name)
	if err != nil {
		return nil, err
	}
	s := &ListState[T]{name: name, codec: newCodec[T](), handle: h}
	ctx.remember(name, s)
	return s, nil
}

// Add appends value to the list of key.
func (s *ListState[T]) Add(key []byte, value T) error {
	start := len(s.values.data)
	data, err := s.codec.encode(s.values.data, value)
	if err != nil {
		s.values.data = s.values.data[:start]
		return encodeError(s.name, err)
	}
	s.values.data = data
	s.values.lens = append(s.values.lens, int32(len(data)-start))
	s.keys.push(key)
	return nil
}

// Get returns the whole list of key, oldest first. It sends the buffered
// appends first.
func (s *ListState[T]) Get(key []byte) ([]T, error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	var list []T
	err := splitBlobs(s.handle.get(key), func(_ int, part []byte, ok bool) error {
		if !ok {
			return nil
		}
		v, err := decodeState(&s.codec, s.name, part)
		if err != nil {
			return err
		}
		list = append(list, v)
		return nil
	})
	return list, err
}

// Update replaces the list of key with values (empty: removes it). It sends
// the buffered appends first.
func (s *ListState[T]) Update(key []byte, values []T) error {
	if err := s.flush(); err != nil {
		return err
	}
	var b blobs
	for _, v := range values {
		data, err := s.codec.encode(b.data, v)
		if err != nil {
			return encodeError(s.name, err)
		}
		b.lens = append(b.lens, int32(len(data)-len(b.data)))
		b.data = data
	}
	s.handle.update(key, b)
	return nil
}

// Clear removes the list of key.
func (s *ListState[T]) Clear(key []byte) error { return s.Update(key, nil) }

func (s *ListState[T]) flush() error {
	if len(s.keys.lens) > 0 {
		s.handle.addMany(s.keys, s.values)
		s.keys.reset()
		s.values.reset()
	}
	return nil
}
