package rotation

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
)

// A step's error names the step once, whether or not the rotator named
// it, and still wraps the rotator's error.
func TestStepErrorNamesTheStepOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		step, detail string
		err          error
		want         string
	}{
		{"set", "", errors.New(`postgres: set: connect as "app": refused`), `set: postgres: connect as "app": refused`},
		{"set", "", errors.New("boom"), "set: boom"},
		{"create", "", errors.New("redis: create: no such user"), "create: redis: no such user"},
		{"test", "the pending credential does not work", errors.New("mysql: test: denied"),
			"test: the pending credential does not work: mysql: denied"},
		// A step name inside the text, not the rotator's prefix, stays.
		{"set", "", errors.New("connect as set: x"), "set: connect as set: x"},
	} {
		if got := stepError(tt.step, tt.detail, tt.err).Error(); got != tt.want {
			t.Errorf("stepError(%q, %q, %q) = %q, want %q", tt.step, tt.detail, tt.err, got, tt.want)
		}
	}
	inner := fmt.Errorf("postgres: set: %w", rotators.ErrUnsupported)
	if err := stepError("set", "", inner); !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("stepError lost the wrapped error: %v", err)
	}
}
