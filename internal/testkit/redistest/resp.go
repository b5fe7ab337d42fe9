package redistest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// StartRESP starts a loopback TCP server that speaks just enough of the Redis protocol for tests of
// replies a real redis-server never sends (a hostile or broken server). Each command gets the chunks
// answer returns for its arguments (the command's name upper-cased), written in turn with a short pause
// between them, so that a client reads each as it comes. It returns the server's address; the server
// stops with the test.
func StartRESP(t testing.TB, answer func(args []string) []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveRESP(c, answer)
		}
	}()
	return ln.Addr().String()
}

func serveRESP(c net.Conn, answer func(args []string) []string) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		for i, chunk := range answer(args) {
			if i > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := c.Write([]byte(chunk)); err != nil {
				return
			}
		}
	}
}

// readCommand reads one RESP array of bulk strings (or an inline command), its name upper-cased.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	var n int
	if _, err := fmt.Sscanf(line, "*%d", &n); err != nil || n < 1 {
		return []string{strings.ToUpper(strings.TrimSpace(line))}, nil
	}
	args := make([]string, 0, n)
	for range n {
		if _, err := r.ReadString('\n'); err != nil { // $len
			return nil, err
		}
		arg, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		args = append(args, strings.TrimSuffix(arg, "\r\n"))
	}
	args[0] = strings.ToUpper(args[0])
	return args, nil
}
