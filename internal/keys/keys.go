// Package keys names the Redis keys of one gate. Every key shares one hash tag, so that scripts touching
// several of them work on Redis Cluster.
package keys

// Keys are the Redis keys and the pub/sub channel of one gate.
type Keys struct {
	// Tag is the shared hash tag, braces included: {<prefix>:<name>}.
	Tag      string
	Version  string
	Lock     string
	Fence    string
	Progress string
	History  string
	Events   string
	// Stop is unlock --force's stop request: the lock value of the holder asked to stop, which the holder
	// reads every keeper interval (a pub/sub notice can be missed) and answers with "stopping:" + value.
	Stop string
}

// For returns the keys of the gate called name under prefix.
func For(prefix, name string) Keys {
	tag := "{" + prefix + ":" + name + "}"
	return Keys{
		Tag:      tag,
		Version:  tag + ":version",
		Lock:     tag + ":lock",
		Fence:    tag + ":fence",
		Progress: tag + ":progress",
		History:  tag + ":history",
		Events:   tag + ":events",
		Stop:     tag + ":stop",
	}
}
