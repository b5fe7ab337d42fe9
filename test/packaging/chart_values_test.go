package packaging_test

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
)

// valueLeaves returns the dotted path of every leaf of values: scalars, lists and empty maps.
func valueLeaves(prefix string, v any, out map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		out[prefix] = true
		return
	}
	for k, child := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		valueLeaves(p, child, out)
	}
}

// schemaFinds reports whether the schema describes path: a property at every step, or a free-form
// object (no properties) somewhere above it.
func schemaFinds(schema map[string]any, path string) bool {
	node := schema
	for _, step := range strings.Split(path, ".") {
		props, ok := node["properties"].(map[string]any)
		if !ok {
			return node["type"] == "object"
		}
		next, ok := props[step].(map[string]any)
		if !ok {
			return false
		}
		node = next
	}
	return true
}

func TestChartValuesDocumented(t *testing.T) {
	raw := readRepoFile(t, chartDir+"/values.yaml")
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	leaves := map[string]bool{}
	valueLeaves("", values, leaves)

	params := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*## @param (\S+) \S`).FindAllStringSubmatch(string(raw), -1) {
		params[m[1]] = true
	}
	readme := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` +\\|").FindAllStringSubmatch(string(readRepoFile(t, chartDir+"/README.md")), -1) {
		readme[m[1]] = true
	}
	var schema map[string]any
	if err := json.Unmarshal(readRepoFile(t, chartDir+"/values.schema.json"), &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}

	for _, leaf := range slices.Sorted(maps.Keys(leaves)) {
		if !params[leaf] {
			t.Errorf("value %s has no ## @param comment in values.yaml", leaf)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(params)) {
		if !leaves[p] {
			t.Errorf("## @param %s documents no value of values.yaml", p)
		}
		if !readme[p] {
			t.Errorf("%s is missing from the README's parameter tables (regenerate them, see the README)", p)
		}
		if !schemaFinds(schema, p) {
			t.Errorf("values.schema.json does not describe %s", p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(readme)) {
		if !params[p] {
			t.Errorf("the README documents %s, which values.yaml does not have", p)
		}
	}
}

func TestChartSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, set, want string
	}{
		{"force is offered for hook Jobs only", "force=true", "force"},
		{"force inside gate is not a value either", "gate.force=true", "force"},
		{"unknown downgrade policy", "gate.downgrade=sometimes", "downgrade"},
		{"duration without a unit", "gate.lockTTL=30", "lockTTL"},
		{"duration in words", "gate.waitTimeout=soon", "waitTimeout"},
		{"unknown Redis mode", "redis.mode=replica", "mode"},
		{"URL without a scheme", "redis.url=redis:6379", "url"},
		{"gate name with a space", "gate.name=a b", "name"},
		{"key prefix with a brace", "gate.keyPrefix=a{b}", "keyPrefix"},
		{"log level", "log.level=verbose", "level"},
		{"hook event", "hooks.pre.events={pre-install,on-sunday}", "events"},
		{"hook failure cooldown without a unit", "hooks.failureCooldown=30", "failureCooldown"},
		{"lock TTL under the binary's 1s minimum", "gate.lockTTL=999ms", "lockTTL"},
		{"lock TTL of half a second", "gate.lockTTL=0.5s", "lockTTL"},
		{"zero lock TTL", "gate.lockTTL=0s", "lockTTL"},
		{"zero wait timeout", "gate.waitTimeout=0s", "waitTimeout"},
		{"zero connect timeout", "gate.connectTimeout=0ms", "connectTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := tryHelm(t, "template", release, chartDir, "--set", tc.set)
			if err == nil {
				t.Fatalf("helm template --set %s succeeded, want a schema error\n%s", tc.set, out)
			}
			if !strings.Contains(stderr, "schema") || !strings.Contains(stderr, tc.want) {
				t.Errorf("helm template --set %s: %s\nwant a schema error naming %s", tc.set, stderr, tc.want)
			}
		})
	}
}

// The schema's duration patterns agree with the binary: a duration the chart accepts for lockTTL,
// waitTimeout or connectTimeout is one config.Load accepts, and the other way round, for these samples.
// (A lock TTL of 1s made only of smaller parts, 500ms500ms, is one the pattern cannot add up: it is refused.)
func TestChartSchemaDurationsAreTheBinarys(t *testing.T) {
	samples := []string{"0", "0s", "0ms", "0.0s", "1ns", "999ms", "0.5s", "1s", "01s", "1.5s", "1000ms",
		"1500ms", "999999us", "1000000us", "1000000000ns", "0.5m", "1m", "1m30s", "2h", "15m"}
	for _, value := range []struct{ value, env string }{
		{"lockTTL", "MAINTENANCE_LOCK_TTL"}, {"waitTimeout", "MAINTENANCE_WAIT_TIMEOUT"}, {"connectTimeout", "MAINTENANCE_CONNECT_TIMEOUT"},
	} {
		for _, d := range samples {
			_, binErr := config.Load(func(k string) string {
				return map[string]string{"PEERDB_DEPLOYMENT_VERSION": "v1", value.env: d}[k]
			})
			_, stderr, chartErr := tryHelm(t, "template", release, chartDir, "--set-string", "gate."+value.value+"="+d)
			if (binErr == nil) != (chartErr == nil) {
				t.Errorf("gate.%s=%s: the binary says %v, helm template says %v %s", value.value, d, binErr, chartErr, stderr)
			}
		}
	}
}
