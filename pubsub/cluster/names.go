package cluster

// maxNames bounds a names table; past it the table starts over.
const maxNames = 4096

// names interns the channel names and epochs a reader takes from frames:
// the same bytes give the same string, made once, so that delivering a
// message to a known channel allocates no name. A table belongs to one
// reading goroutine.
type names map[string]string

// get returns the string of b.
func (n *names) get(b []byte) string {
	if s, ok := (*n)[string(b)]; ok { // no allocation for the lookup
		return s
	}
	if *n == nil || len(*n) >= maxNames {
		*n = make(names)
	}
	s := string(b)
	(*n)[s] = s
	return s
}
