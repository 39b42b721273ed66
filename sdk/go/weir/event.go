package weir

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Event is one input event: an optional key, a value and an event time.
//
// Key and Value point into the batch the host passed in, which nothing
// writes to afterwards: they may be kept after the call, but must not be
// modified.
type Event struct {
	// Key is the key's bytes; meaningful only when HasKey is true. An empty
	// key (HasKey, no bytes) is a key like any other.
	Key []byte
	// HasKey is false for an event without a key.
	HasKey bool
	// Value is the value's bytes.
	Value []byte
	// Timestamp is the event time in milliseconds since the Unix epoch.
	Timestamp int64
}

// RequireKey returns the event's key, or a bad-input error `event has no key`.
func (e Event) RequireKey() ([]byte, error) {
	if !e.HasKey {
		return nil, BadInput("event has no key")
	}
	return e.Key, nil
}

// ValueString returns the value as text (sharing the value's bytes, not a
// copy), or a bad-input error `value is not UTF-8 text`.
func (e Event) ValueString() (string, error) {
	if !utf8.Valid(e.Value) {
		return "", BadInput("value is not UTF-8 text")
	}
	return unsafe.String(unsafe.SliceData(e.Value), len(e.Value)), nil
}

// KeyString returns the key as text (sharing the key's bytes), "" and false
// for no key, or a bad-input error `key is not UTF-8 text`.
func (e Event) KeyString() (string, bool, error) {
	if !e.HasKey {
		return "", false, nil
	}
	if !utf8.Valid(e.Key) {
		return "", false, BadInput("key is not UTF-8 text")
	}
	return unsafe.String(unsafe.SliceData(e.Key), len(e.Key)), true, nil
}

// TimeDomain is the clock a timer follows.
type TimeDomain uint8

const (
	// EventTime timers fire when the event-time watermark reaches their time.
	EventTime TimeDomain = iota
	// ProcessingTime timers fire when the wall clock reaches their time.
	ProcessingTime
)

// String returns "event-time" or "processing-time".
func (d TimeDomain) String() string {
	if d == ProcessingTime {
		return "processing-time"
	}
	return "event-time"
}

// Timer is a timer that fired.
type Timer struct {
	// Key is the key it was registered for; meaningful only when HasKey.
	Key []byte
	// HasKey is false for a timer registered without a key.
	HasKey bool
	// Timestamp is the time it was registered for (ms).
	Timestamp int64
	// Domain is the clock it follows.
	Domain TimeDomain
}

// Output collects the events an operator emits, in the flat form the host
// reads. Emitting copies the bytes: the caller may reuse its buffers.
type Output struct {
	data      []byte
	keyLens   []int32
	valueLens []uint32
	times     []int64
}

// Emit emits an event with key, value and event time timestamp.
func (o *Output) Emit(key, value []byte, timestamp int64) {
	o.data = append(o.data, key...)
	o.keyLens = append(o.keyLens, int32(len(key)))
	o.push(value, timestamp)
}

// EmitString is Emit with the value given as text.
func (o *Output) EmitString(key []byte, value string, timestamp int64) {
	o.data = append(o.data, key...)
	o.keyLens = append(o.keyLens, int32(len(key)))
	o.data = append(o.data, value...)
	o.valueLens = append(o.valueLens, uint32(len(value)))
	o.times = append(o.times, timestamp)
}

// EmitInt is Emit with the value given as an integer, written as decimal text.
func (o *Output) EmitInt(key []byte, value int64, timestamp int64) {
	o.data = append(o.data, key...)
	o.keyLens = append(o.keyLens, int32(len(key)))
	start := len(o.data)
	o.data = strconv.AppendInt(o.data, value, 10)
	o.valueLens = append(o.valueLens, uint32(len(o.data)-start))
	o.times = append(o.times, timestamp)
}

// EmitUint is Emit with the value given as an unsigned integer, written as
// decimal text.
func (o *Output) EmitUint(key []byte, value uint64, timestamp int64) {
	o.data = append(o.data, key...)
	o.keyLens = append(o.keyLens, int32(len(key)))
	start := len(o.data)
	o.data = strconv.AppendUint(o.data, value, 10)
	o.valueLens = append(o.valueLens, uint32(len(o.data)-start))
	o.times = append(o.times, timestamp)
}

// EmitUnkeyed emits an event without a key.
func (o *Output) EmitUnkeyed(value []byte, timestamp int64) {
	o.keyLens = append(o.keyLens, -1)
	o.push(value, timestamp)
}

// Forward emits e unchanged.
func (o *Output) Forward(e Event) {
	if e.HasKey {
		o.Emit(e.Key, e.Value, e.Timestamp)
	} else {
		o.EmitUnkeyed(e.Value, e.Timestamp)
	}
}

// Len returns how many events were emitted so far.
func (o *Output) Len() int { return len(o.times) }

func (o *Output) push(value []byte, timestamp int64) {
	o.data = append(o.data, value...)
	o.valueLens = append(o.valueLens, uint32(len(value)))
	o.times = append(o.times, timestamp)
}

func (o *Output) reset() {
	o.data = o.data[:0]
	o.keyLens = o.keyLens[:0]
	o.valueLens = o.valueLens[:0]
	o.times = o.times[:0]
}

// Error is the error an operator returns to reject one event as bad input
// (see BadInput) or to fail the job (see Fatal). Any other error returned
// from an operator is fatal.
type Error struct {
	// Bad is true for bad input: the event goes to the dead-letter output
	// and the job goes on. False: the job fails and restarts from its last
	// checkpoint.
	Bad bool
	// Message says why; for bad input it is written to the dead-letter output.
	Message string
}

func (e *Error) Error() string {
	if e.Bad {
		return "bad input: " + e.Message
	}
	return e.Message
}

// BadInput returns an error that sends the event being handled to the
// dead-letter output with message; the job goes on.
//
// Validate an event before writing state for it: writes made before a
// bad-input error are kept.
func BadInput(message string) error { return &Error{Bad: true, Message: message} }

// BadInputf is BadInput with a fmt.Sprintf message.
func BadInputf(format string, args ...any) error {
	return BadInput(fmt.Sprintf(format, args...))
}

// Fatal returns an error that fails the job with message; it restarts from
// its last checkpoint.
func Fatal(message string) error { return &Error{Message: message} }

// Fatalf is Fatal with a fmt.Sprintf message.
func Fatalf(format string, args ...any) error { return Fatal(fmt.Sprintf(format, args...)) }

// IsBadInput reports whether err is (or wraps) a bad-input error.
func IsBadInput(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Bad
}

// badMessage returns the message of a bad-input error, and whether err is one.
func badMessage(err error) (string, bool) {
	var e *Error
	if errors.As(err, &e) && e.Bad {
		return e.Message, true
	}
	return "", false
}

// fatalMessage is what the host is told of a fatal err.
func fatalMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && !e.Bad {
		return e.Message
	}
	return err.Error()
}
