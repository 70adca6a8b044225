package kms

import (
	"fmt"
	"testing"
)

var benchSizes = []int{1 << 10, 64 << 10}

func BenchmarkSeal(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			bd := setup(b)
			p := SealParams{Region: testRegion, Secret: "bench/secret", Version: 1, Plaintext: make([]byte, size)}
			bd.seal(b, bd.m, p) // create the default key and warm the cache
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bd.m.Seal(bd.ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			bd := setup(b)
			p := SealParams{Region: testRegion, Secret: "bench/secret", Version: 1, Plaintext: make([]byte, size)}
			op := openParams(p, bd.seal(b, bd.m, p).Envelope)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bd.m.Open(bd.ctx, op); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSealOpen(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			bd := setup(b)
			p := SealParams{Region: testRegion, Secret: "bench/secret", Version: 1, Plaintext: make([]byte, size)}
			bd.seal(b, bd.m, p)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				s, err := bd.m.Seal(bd.ctx, p)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bd.m.Open(bd.ctx, openParams(p, s.Envelope)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSealOpenParallel shows the cache does not serialise callers.
func BenchmarkSealOpenParallel(b *testing.B) {
	bd := setup(b)
	p := SealParams{Region: testRegion, Secret: "bench/secret", Version: 1, Plaintext: make([]byte, 1<<10)}
	bd.seal(b, bd.m, p)
	b.SetBytes(1 << 10)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := bd.m.Seal(bd.ctx, p)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := bd.m.Open(bd.ctx, openParams(p, s.Envelope)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
