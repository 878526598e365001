// Command transport measures what carrying raw chunks from a reader to
// compressors costs, by transport, with nothing else running: no source to
// read, no compression, no repository. A real nats-server (embedded, over
// TCP on 127.0.0.1) carries the bytes; the producer and the consumers are
// separate client connections in this process, so the process's CPU time
// covers the producer, the server and the consumers together.
//
//	go run ./scripts/transport -mode js -gib 2
//
// Modes:
//
//	js     raw chunks as messages of a memory-backed JetStream work queue
//	       (the data plane before issue 15)
//	fetch  small descriptors on a file-backed JetStream work queue; the
//	       consumer that takes one fetches the bytes from the producer by
//	       core NATS request/reply (the producer answers from memory)
//	core   raw chunks published on core NATS to a queue group: the floor of
//	       what the server costs per byte, without flow control
//	tcp    the consumers fetch the bytes from the producer over plain TCP
//	       connections, no server: the floor of any network transport
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	mode := flag.String("mode", "js", "js, fetch, core or tcp")
	gib := flag.Float64("gib", 1, "GiB to carry")
	chunk := flag.Int("chunk", 4<<20, "chunk size in bytes")
	consumers := flag.Int("consumers", 2, "consumer connections")
	window := flag.Int("window", 16, "chunks in flight")
	flag.Parse()

	dir, _ := os.MkdirTemp("", "transport-")
	defer os.RemoveAll(dir)
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, MaxPayload: 8 << 20, NoLog: true, NoSigs: true}
	srv, err := server.NewServer(opts)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("server not ready")
	}
	defer srv.Shutdown()
	n := int(*gib * float64(1<<30) / float64(*chunk))
	data := make([]byte, *chunk)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	switch *mode {
	case "js":
		runJS(srv.ClientURL(), n, data, *consumers, *window)
	case "fetch":
		runFetch(srv.ClientURL(), n, data, *consumers, *window)
	case "core":
		runCore(srv.ClientURL(), n, data, *consumers, *window)
	case "tcp":
		runTCP(n, data, *consumers, *window)
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
	wall := time.Since(start).Seconds()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := tv(after.Utime) - tv(before.Utime) + tv(after.Stime) - tv(before.Stime)
	gb := float64(n) * float64(*chunk) / 1e9
	fmt.Printf("%-6s %5.2f GB in %5.2fs: %6.0f MB/s, %5.2f CPU-s/GB\n", *mode, gb, wall, gb*1e3/wall, cpu/gb)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func connect(url string) *nats.Conn {
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	return nc
}

// runJS: the producer publishes each chunk to a memory work queue bounded
// to window chunks, waiting for room as the reader did; consumers pull and
// ack.
func runJS(url string, n int, data []byte, consumers, window int) {
	ctx := context.Background()
	pc := connect(url)
	js, _ := jetstream.New(pc)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.MemoryStorage, MaxBytes: int64(window * (len(data) + 1024)), Discard: jetstream.DiscardNew})
	if err != nil {
		log.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		log.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan struct{})
	var its []jetstream.MessagesContext
	for range consumers {
		cc := connect(url)
		cjs, _ := jetstream.New(cc)
		c, _ := cjs.Consumer(ctx, "RAW", "c")
		it, _ := c.Messages(jetstream.PullMaxMessages(2))
		its = append(its, it)
		go func() {
			for {
				msg, err := it.Next()
				if err != nil {
					return
				}
				_ = len(msg.Data())
				msg.Ack()
				if got.Add(1) == int64(n) {
					close(done)
				}
			}
		}()
	}
	defer func() {
		for _, it := range its {
			it.Stop()
		}
	}()
	_ = cons
	for i := 0; i < n; {
		if _, err := js.Publish(ctx, "raw", data); err != nil {
			time.Sleep(time.Millisecond) // full: wait for room
			continue
		}
		i++
	}
	<-done
}

// runFetch: descriptors on a file-backed work queue; the consumer fetches
// the bytes by request/reply from the producer, which answers from memory.
func runFetch(url string, n int, data []byte, consumers, window int) {
	ctx := context.Background()
	pc := connect(url)
	js, _ := jetstream.New(pc)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "READY", Subjects: []string{"ready"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "READY", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		log.Fatal(err)
	}
	// The producer answers fetches on its own connections.
	slots := make(chan struct{}, window)
	for range 2 {
		sc := connect(url)
		sc.QueueSubscribe("fetch", "producer", func(m *nats.Msg) {
			m.Respond(data)
			<-slots // the chunk's buffer is free once sent
		})
		sc.Flush()
	}
	var got atomic.Int64
	done := make(chan struct{})
	var its []jetstream.MessagesContext
	for range consumers {
		cc := connect(url)
		cjs, _ := jetstream.New(cc)
		c, _ := cjs.Consumer(ctx, "READY", "c")
		it, _ := c.Messages(jetstream.PullMaxMessages(2))
		its = append(its, it)
		go func() {
			for {
				msg, err := it.Next()
				if err != nil {
					return
				}
				reply, err := cc.Request("fetch", msg.Data(), 10*time.Second)
				if err != nil {
					log.Fatal(err)
				}
				_ = len(reply.Data)
				msg.Ack()
				if got.Add(1) == int64(n) {
					close(done)
				}
			}
		}()
	}
	defer func() {
		for _, it := range its {
			it.Stop()
		}
	}()
	desc := make([]byte, 64)
	for i := range n {
		slots <- struct{}{} // a buffer to read the next chunk into
		binary.LittleEndian.PutUint64(desc, uint64(i))
		if _, err := js.Publish(ctx, "ready", desc); err != nil {
			log.Fatal(err)
		}
	}
	<-done
}

// runCore: core NATS publish to a queue group, a credit per window.
func runCore(url string, n int, data []byte, consumers, window int) {
	pc := connect(url)
	credits := make(chan struct{}, window)
	var got atomic.Int64
	done := make(chan struct{})
	for range consumers {
		cc := connect(url)
		cc.QueueSubscribe("raw", "q", func(m *nats.Msg) {
			_ = len(m.Data)
			<-credits
			if got.Add(1) == int64(n) {
				close(done)
			}
		})
		cc.Flush()
	}
	for range n {
		credits <- struct{}{}
		if err := pc.Publish("raw", data); err != nil {
			log.Fatal(err)
		}
	}
	pc.Flush()
	<-done
}

// runTCP: each consumer has a TCP connection to the producer and asks for
// one chunk at a time.
func runTCP(n int, data []byte, consumers, window int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var next atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				req := make([]byte, 8)
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					if _, err := c.Write(data); err != nil {
						return
					}
				}
			}()
		}
	}()
	var wg sync.WaitGroup
	for range consumers {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		wg.Go(func() {
			buf := make([]byte, len(data))
			req := []byte(strconv.Itoa(12345678))[:8]
			for next.Add(1) <= int64(n) {
				c.Write(req)
				if _, err := io.ReadFull(c, buf); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	ln.Close()
	_ = window
}
