package storetest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// Precision is what every backend keeps of a time.Time: microseconds, UTC.
const Precision = time.Microsecond

var timeType = reflect.TypeFor[time.Time]()

// normalized returns a deep copy of v with times truncated to Precision and
// made UTC, and empty slices and maps made nil, so that records compare
// the way a backend stores them.
func normalized[T any](v T) T {
	rv := reflect.New(reflect.TypeOf(&v).Elem()).Elem()
	rv.Set(reflect.ValueOf(&v).Elem())
	normalize(rv)
	return rv.Interface().(T)
}

func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			t := v.Interface().(time.Time)
			v.Set(reflect.ValueOf(t.Truncate(Precision).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				normalize(v.Field(i))
			}
		}
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		n := reflect.New(v.Type().Elem())
		n.Elem().Set(v.Elem())
		normalize(n.Elem())
		v.Set(n)
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(n, v)
		for i := range n.Len() {
			normalize(n.Index(i))
		}
		v.Set(n)
	case reflect.Map:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

// check reports got != want (after normalizing both), naming the call.
func check[T any](t *testing.T, call string, got, want T) {
	t.Helper()
	g, w := normalized(got), normalized(want)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s =\n  %s\nwant\n  %s", call, show(g), show(w))
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }
