package compressor

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// lostAck is a message whose acknowledgement never reaches the server, as
// when the compressor is killed right after recording the completion.
type lostAck struct{ jetstream.Msg }

func (lostAck) Ack() error                      { return nats.ErrConnectionClosed }
func (lostAck) DoubleAck(context.Context) error { return nats.ErrConnectionClosed }

// TestStagedChunkSurvivesLostAck handles a staged chunk, records its
// completion, and loses the acknowledgement: the staged object must still be
// there for the redelivery, which stores the chunk again and, once its
// acknowledgement is confirmed, deletes the object. The compressor used to
// delete it before recording the completion and acknowledging, so every
// redelivery failed with "staged chunk ... not found"; killed before the
// completion was recorded, the chunk failed after its deliveries, and the
// job with it.
func TestStagedChunkSurvivesLostAck(t *testing.T) {
	t.Parallel()
	br, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Shutdown)
	nc, err := br.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := queue.Setup(ctx, js, queue.StreamConfig{MaxPayload: int32(nc.MaxPayload())}); err != nil {
		t.Fatal(err)
	}
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
	})
	repoName := filepath.Join(t.TempDir(), "repo")
	repo, err := repos.Get(ctx, repoName, true)
	if err != nil {
		t.Fatal(err)
	}
	job := &queue.Job{
		V: queue.MessageVersion, ID: "job1", Kind: queue.KindBackup, State: queue.StateRunning,
		Backup: &queue.BackupRequest{V: queue.MessageVersion, JobID: "job1", Repo: repoName, Level: "fastest"},
	}
	kv, err := js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, job.ID, queue.Encode(job)); err != nil {
		t.Fatal(err)
	}
	done, err := nc.SubscribeSync(queue.DoneSubject(job.ID))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(nc, Config{Name: "c1", Workers: 1, Repos: repos})
	if err != nil {
		t.Fatal(err)
	}

	// A reader stages chunk 0 and sends its message.
	data := make([]byte, 1<<20)
	rand.Read(data)
	id := chunk.Sum(data)
	key := repository.StagingKey(job.ID, 0)
	if err := repo.Store().Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	raw := nats.NewMsg(queue.RawSubject(job.ID))
	raw.Header.Set(queue.HeaderJob, job.ID)
	raw.Header.Set(queue.HeaderIndex, "0")
	raw.Header.Set(queue.HeaderLength, strconv.Itoa(len(data)))
	raw.Header.Set(queue.HeaderStaged, key)
	if _, err := js.PublishMsg(ctx, raw); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, queue.StreamRaw, jetstream.ConsumerConfig{
		Durable: "test", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	next := func(delivery uint64) jetstream.Msg {
		t.Helper()
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			if md, err := msg.Metadata(); err != nil || md.NumDelivered != delivery {
				t.Fatalf("delivery %d of the raw message, want %d (%v)", md.NumDelivered, delivery, err)
			}
			return msg
		}
		t.Fatalf("delivery %d of the raw message did not come: %v", delivery, batch.Error())
		return nil
	}
	completion := func() {
		t.Helper()
		msg, err := done.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no completion: %v", err)
		}
		var d queue.Done
		if err := queue.Decode(msg.Data, &d); err != nil || d.Error != "" || d.Hash != id.String() {
			t.Fatalf("completion %+v (%v), want chunk %s stored", d, err, id)
		}
	}

	if err := c.handle(ctx, lostAck{next(1)}); err != nil {
		t.Fatalf("first handling: %v", err)
	}
	completion()
	if _, err := repo.Store().Stat(ctx, key); err != nil {
		t.Errorf("staged chunk after a completion whose ack was lost: %v", err)
	}

	// The ack wait expires; the message comes again.
	if err := c.handle(ctx, next(2)); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	completion()
	if _, err := repo.Store().Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("staged chunk after the acknowledged redelivery: %v, want it deleted", err)
	}
	if st, err := repo.StatChunk(ctx, id); err != nil || st.State != repository.ChunkIntact {
		t.Errorf("chunk %s not stored whole: %+v, %v", id, st, err)
	}
	// The redelivery was acknowledged: nothing comes a third time, past
	// the ack wait.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		md, _ := msg.Metadata()
		t.Errorf("the raw message came again (delivery %d) after its acknowledged redelivery", md.NumDelivered)
	}
}
