package redisconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

const hostileBulk = "$4611686018427387904\r\n" // a bulk string of 2^62 bytes: go-redis panics allocating it

// hostile is a stand-in that answers GET with hostileBulk, and a SUBSCRIBE with its confirmation and
// then a message whose payload is hostileBulk.
func hostile(t *testing.T) string {
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
			go serveHostile(c)
		}
	}()
	return ln.Addr().String()
}

func serveHostile(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		name, err := readCommandName(r)
		if err != nil {
			return
		}
		reply := "+OK\r\n"
		switch name {
		case "HELLO":
			reply = "-ERR unknown command 'HELLO'\r\n"
		case "GET":
			reply = hostileBulk
		case "SUBSCRIBE":
			reply = "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			return
		}
		if name == "SUBSCRIBE" {
			time.Sleep(50 * time.Millisecond)
			_, _ = c.Write([]byte("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n" + hostileBulk))
		}
	}
}

// readCommandName reads one RESP array of bulk strings and returns its first element in upper case.
func readCommandName(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	var n int
	if _, err := fmt.Sscanf(line, "*%d", &n); err != nil || n < 1 {
		return "", fmt.Errorf("not a command: %q", line)
	}
	var name string
	for i := range n {
		if _, err := r.ReadString('\n'); err != nil {
			return "", err
		}
		arg, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if i == 0 {
			name = strings.ToUpper(strings.TrimSuffix(arg, "\r\n"))
		}
	}
	return name, nil
}

func TestAReplyGoRedisCannotReadIsAnErrorNotAPanic(t *testing.T) {
	target, err := Parse(Settings{URL: "redis://" + hostile(t) + "/0", Mode: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb, wdb := target.NewClient(), target.NewWriteClient()
	defer rdb.Close()
	defer wdb.Close()
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("GET answered with a bulk length of 2^62: err %v, want ErrMalformedReply", err)
	}
	if err := wdb.Get(ctx, "k").Err(); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("GET on the write client: err %v, want ErrMalformedReply", err)
	}
	pipe := rdb.Pipeline()
	pipe.Get(ctx, "k")
	if _, err := pipe.Exec(ctx); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("pipelined GET: err %v, want ErrMalformedReply", err)
	}
	// A message go-redis cannot read, pushed on a subscription: read in a goroutine of go-redis's own
	// (sub.Channel) it would end this test process; Messages recovers and goes silent.
	sub := rdb.Subscribe(ctx, "ch")
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := Messages(sub, nil)
	select {
	case m := <-msgs:
		t.Fatalf("a message %v came through", m)
	case <-time.After(500 * time.Millisecond):
	}
	_ = sub.Close()
}
