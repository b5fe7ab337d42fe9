// Package logtest checks the gate's JSON log lines in tests: one key per line, at every level of
// nesting, since a reader (jq, Loki, Elasticsearch) keeps only one value of a repeated key.
package logtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// DuplicateKeys returns the keys that appear more than once in one object of a JSON line ("a.b" for
// a nested object). A line that is not a JSON object has none.
func DuplicateKeys(line []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(line))
	var dups []string
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k := path + kt.(string)
				if seen[k] {
					dups = append(dups, k)
				}
				seen[k] = true
				if err := walk(k + "."); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(path); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	_ = walk("")
	return dups
}

// CheckLines fails t for every JSON line of logs that repeats a key.
func CheckLines(t testing.TB, logs string) {
	t.Helper()
	for line := range strings.Lines(logs) {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if dups := DuplicateKeys([]byte(line)); len(dups) > 0 {
			t.Errorf("log line repeats %s: %s", strings.Join(dups, ", "), strings.TrimSpace(fmt.Sprint(line)))
		}
	}
}
