// Package e2e holds the black-box suites: its TestMain builds the gate binary once from the module's
// root (with the crashpoints tag, so that the fault tests can pause a holder), and each test runs
// replicas of it as real processes against real redis-server processes, child processes and HTTP
// servers: exactly-once under contention, crashes and stalls of the holder, Redis topologies, the
// security model, bad input, FIFOs, the process tree of exec tasks, a soak. The gate's own packages
// are tested beside their code; the chaos checker is test/chaos, the packaging checks test/packaging.
package e2e
