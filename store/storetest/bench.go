package storetest

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// BenchmarkPutVersion measures a secret put: one transaction that reads the
// secret, inserts version N+1, bumps NextVersion, moves the current and
// previous stages and appends an outbox event. In parallel mode each
// goroutine writes its own secret, so the numbers show write throughput
// rather than conflicts.
func BenchmarkPutVersion(b *testing.B, s store.Store, parallel bool) {
	ctx := b.Context()
	var next atomic.Int64
	envelope := bytes.Repeat([]byte{0xa5}, 1024)
	newSecret := func() string {
		name := fmt.Sprintf("bench/put-%d", next.Add(1))
		sec := store.Secret{Name: name, Type: "password", Region: "default", KeyID: "k", NextVersion: 1, CreatedAt: base, UpdatedAt: base}
		if err := s.CreateSecret(ctx, sec); err != nil {
			b.Fatalf("CreateSecret err = %v", err)
		}
		return name
	}
	put := func(name string) error {
		return s.InTx(ctx, func(tx store.Ops) error {
			sec, err := tx.GetSecret(ctx, name)
			if err != nil {
				return err
			}
			n := sec.NextVersion
			now := time.Now()
			if err := tx.InsertVersion(ctx, store.SecretVersion{Secret: name, Version: n, Envelope: envelope,
				KeyID: "k", KeyVersion: 1, Fingerprint: "fp", CreatedAt: now, CreatedBy: "bench", Reason: "put"}); err != nil {
				return err
			}
			sec.NextVersion, sec.UpdatedAt = n+1, now
			if err := tx.UpdateSecret(ctx, sec); err != nil {
				return err
			}
			if n > 1 {
				if err := tx.SetStage(ctx, name, store.StagePrevious, n-1); err != nil {
					return err
				}
			}
			if err := tx.SetStage(ctx, name, store.StageCurrent, n); err != nil {
				return err
			}
			_, err = tx.AppendOutbox(ctx, store.OutboxEvent{Type: "version.current", Secret: name, Version: n,
				Payload: []byte(`{"type":"version.current"}`), CreatedAt: now})
			return err
		})
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(envelope)))
	if !parallel {
		name := newSecret()
		b.ResetTimer()
		for b.Loop() {
			if err := put(name); err != nil {
				b.Fatalf("put err = %v", err)
			}
		}
		return
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		name := newSecret()
		for pb.Next() {
			if err := put(name); err != nil {
				b.Errorf("put err = %v", err)
				return
			}
		}
	})
}

// BenchmarkGetVersion measures reading the current version of a secret
// with a 1 KiB envelope, outside any transaction.
func BenchmarkGetVersion(b *testing.B, s store.Store, parallel bool) {
	ctx := b.Context()
	envelope := bytes.Repeat([]byte{0x5a}, 1024)
	const name = "bench/get"
	err := s.InTx(ctx, func(tx store.Ops) error {
		if err := tx.CreateSecret(ctx, store.Secret{Name: name, Type: "password", Region: "default", KeyID: "k", NextVersion: 4, CreatedAt: base, UpdatedAt: base}); err != nil {
			return err
		}
		for n := int64(1); n <= 3; n++ {
			if err := tx.InsertVersion(ctx, store.SecretVersion{Secret: name, Version: n, Envelope: envelope, KeyID: "k", KeyVersion: 1, CreatedAt: base}); err != nil {
				return err
			}
		}
		if err := tx.SetStage(ctx, name, store.StagePrevious, 2); err != nil {
			return err
		}
		return tx.SetStage(ctx, name, store.StageCurrent, 3)
	})
	if err != nil {
		b.Fatalf("seed err = %v", err)
	}
	get := func() error {
		v, err := s.GetVersion(ctx, name, 3)
		if err != nil {
			return err
		}
		if len(v.Envelope) != len(envelope) || len(v.Stages) != 1 {
			return fmt.Errorf("GetVersion = %d bytes, stages %v", len(v.Envelope), v.Stages)
		}
		return nil
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(envelope)))
	b.ResetTimer()
	if !parallel {
		for b.Loop() {
			if err := get(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
