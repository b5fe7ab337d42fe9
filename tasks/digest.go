package tasks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"go.yaml.in/yaml/v3"
)

// DigestLen is the length, in hex digits, of a task's digest: 64 bits of SHA-256, enough to tell one
// definition of a task from the next.
const DigestLen = 16

// contentTask is a kind whose definition includes what it read while loading (an sql task's files), so
// that an edit of such a file changes the task's digest as an edit of the task file does.
type contentTask interface {
	content() []string
}

// digestInput is the canonical form of a task as loaded: encoding/json writes struct fields in order and
// map keys sorted, so two loads of the same definition give the same bytes whatever the file's layout
// (key order, quoting, anchors, comments).
type digestInput struct {
	Kind    string   `json:"kind"`
	Fields  any      `json:"fields"`
	From    string   `json:"from"`
	To      string   `json:"to"`
	Install *bool    `json:"install"`
	Timeout string   `json:"timeout"`
	Content []string `json:"content"`
}

// digest returns the hex prefix of the SHA-256 of the task's canonical form: its kind, the kind's fields,
// when and timeout, and any content it loaded. The task's name is not part of it: progress is kept by name.
func digest(kind string, fields any, when When, timeout time.Duration, task Task) string {
	in := digestInput{Kind: kind, Fields: fields, From: when.From, To: when.To, Install: when.Install, Timeout: timeout.String()}
	if c, ok := task.(contentTask); ok {
		in.Content = c.content()
	}
	data, err := json.Marshal(in)
	if err != nil {
		// Fields that JSON cannot hold (a mapping with non-string keys): YAML sorts keys as well.
		in.Fields = nil
		data, _ = json.Marshal(in)
		y, _ := yaml.Marshal(fields)
		data = append(data, y...)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:DigestLen]
}

// nodeValue is a kind's YAML node as plain values (aliases and merge keys resolved), for the digest.
func nodeValue(n *yaml.Node) any {
	var v any
	if n == nil || n.Decode(&v) != nil {
		return nil
	}
	return v
}
