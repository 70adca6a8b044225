package kms

import "sync"

// scratch holds the buffers one Seal, Open, Encrypt or Decrypt call needs,
// so that the hot path allocates only its result and the data key's
// cipher. Secret parts are wiped before a scratch goes back to the pool.
type scratch struct {
	rnd  [RootKeySize + 2*nonceSize]byte // data key and both nonces
	dek  [RootKeySize]byte               // an unwrapped data key
	aad  []byte                          // the value's AAD
	wrap []byte                          // the data key's AAD
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	clear(s.rnd[:])
	clear(s.dek[:])
	// Keep ordinary buffers; drop ones a huge name or context grew.
	if cap(s.aad) > 4096 {
		s.aad = nil
	}
	s.aad, s.wrap = s.aad[:0], s.wrap[:0]
	scratchPool.Put(s)
}
