package proto

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
)

// TestGeneratedIsCurrent fails when rotator.proto was edited without
// `make proto`, or the generated code was edited by hand: scripts/proto.sh
// records the checksum of the .proto and of what it generated from it.
// (scripts/proto.sh --check also regenerates and compares, where protoc
// runs.)
func TestGeneratedIsCurrent(t *testing.T) {
	f, err := os.Open("generated.sha256")
	if err != nil {
		t.Fatalf("generated.sha256: %v (run make proto)", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("generated.sha256: malformed line %q", sc.Text())
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s changed since it was generated (sha256 %x, recorded %s): run make proto", name, got, sum)
		}
		seen[name] = true
	}
	for _, want := range []string{"rotator.proto", "rotator.pb.go", "rotator_grpc.pb.go"} {
		if !seen[want] {
			t.Errorf("generated.sha256 does not record %s: run make proto", want)
		}
	}
}

func TestErrorKindsRoundTrip(t *testing.T) {
	for _, e := range []error{rotators.ErrUnsupported, rotators.ErrWrongIdentity, rotators.ErrPlaintext, rotators.ErrTestQuery, rotators.ErrTargetMismatch} {
		wrapped := errors.Join(errors.New("context"), e)
		k := ErrorKind(wrapped)
		if k == "" || KindError(k) != e {
			t.Errorf("ErrorKind(%v) = %q, KindError = %v; want it to round-trip", e, k, KindError(k))
		}
	}
	if ErrorKind(errors.New("plain")) != "" || KindError("nope") != nil {
		t.Errorf("a plain error or unknown kind maps to a sentinel")
	}
}
