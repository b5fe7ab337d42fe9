// Package chaos is the chaos checker: it runs replicas of the built gate against a real redis-server
// under a seeded schedule of faults, and judges the run from outside, by what the tasks wrote to
// their log and what Redis holds, never by the gate's own logs. Run it with make chaos (SEED,
// DURATION, ROUND); .ci/run runs a fixed seed for about two minutes.
//
// Its tests carry the build tag chaos, so that go test ./... leaves them out.
package chaos
