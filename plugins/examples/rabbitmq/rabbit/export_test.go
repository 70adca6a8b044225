package rabbit

// Internals the external tests reach.
var (
	CheckIdentity = checkIdentity
	HashMatches   = hashMatches
)
