package reader

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// countTimeout bounds counting a directory's files for automatic mode.
const countTimeout = 5 * time.Minute

// statHandler answers stat requests each on a goroutine of its own, owned
// by wg and cancelled with ctx: counting a large tree must not hold up the
// subscription, whose next request may be the coordinator asking whether
// this reader is alive.
func (r *Reader) statHandler(ctx context.Context, wg *sync.WaitGroup) nats.MsgHandler {
	return func(m *nats.Msg) {
		wg.Go(func() {
			reply := queue.StatReply{V: queue.MessageVersion}
			var req queue.StatRequest
			if err := queue.Decode(m.Data, &req); err != nil {
				reply.Error = err.Error()
			} else if req.Path != "" {
				r.stat(ctx, &req, &reply)
			}
			_ = m.Respond(queue.Encode(&reply))
		})
	}
}

// stat describes a source: a volume's size, kind and mode, or a directory
// and, when asked, the facts automatic mode choice needs.
func (r *Reader) stat(ctx context.Context, req *queue.StatRequest, reply *queue.StatReply) {
	if fi, err := os.Stat(req.Path); err == nil && fi.IsDir() {
		reply.Kind = manifest.KindDir
		if req.CountLimit <= 0 {
			return
		}
		if reply.MountRoot, reply.Device, err = source.MountDevice(req.Path); err != nil {
			r.logger.WarnContext(ctx, "mount table not readable; treating the directory as not a mount root", "err", err)
		}
		if reply.Device == "" {
			return // files mode whatever the count (plan.ChooseMode): do not walk the tree twice
		}
		ctx, cancel := context.WithTimeout(ctx, countTimeout)
		defer cancel()
		if reply.Files, err = source.CountFiles(ctx, req.Path, req.CountLimit); err != nil {
			reply.Error = fmt.Sprintf("count files in %s: %v", req.Path, err)
		}
		return
	}
	vol, err := source.OpenVolume(req.Path)
	if err != nil {
		reply.Error = err.Error()
		return
	}
	reply.Size, reply.Kind, reply.MTime = vol.Size(), vol.Kind(), vol.MTime()
	reply.FileMode = vol.FileMode()
	vol.Close()
}
