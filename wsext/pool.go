package wsext

import (
	"math/bits"
	"sync"
)

// Buffers come from size classes of powers of two, 4 KiB to 16 MiB, so that
// message and queue buffers are reused instead of allocated per message.
const (
	minBufShift = 12
	maxBufShift = 24
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns an empty buffer with room for at least n bytes.
func getBuf(n int) []byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		return make([]byte, 0, n)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		b := (*p)[:0]
		*p = nil
		bufHeaders.Put(p)
		return b
	}
	return make([]byte, 0, 1<<(c+minBufShift))
}

// bufHeaders recycles the *[]byte boxes that carry buffers through the
// pools, so that putting a buffer back does not allocate.
var bufHeaders = sync.Pool{New: func() any { return new([]byte) }}

// putBuf returns b to its pool; b must not be used afterwards.
func putBuf(b []byte) {
	c := cap(b)
	if c < 1<<minBufShift || c > 1<<maxBufShift || c&(c-1) != 0 {
		return
	}
	p := bufHeaders.Get().(*[]byte)
	*p = b[:0]
	bufPools[bufClass(c)].Put(p)
}
