package reader

import (
	"fmt"
	"sync"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/restore"
)

// volumeIdle is how long a restore target stays open without a write: the
// descriptors of a job that ended elsewhere (its finish or abort handled by
// another reader of the host) are released after it.
const volumeIdle = 10 * time.Minute

// openVolumes keeps the volume targets of running restores open, so that a
// job's chunks are written through the descriptors Prepare opened rather
// than by name. It is safe for concurrent use.
type openVolumes struct {
	mu   sync.Mutex
	open map[string]*openVolume
	now  func() time.Time
}

type openVolume struct {
	v    *restore.Volume
	used time.Time
}

func newOpenVolumes() *openVolumes {
	return &openVolumes{open: make(map[string]*openVolume), now: time.Now}
}

func volumeKey(jobID string, target int) string { return fmt.Sprintf("%s/%d", jobID, target) }

// put keeps v, the prepared target of a job, replacing (and closing) what
// a redelivered prepare had opened before.
func (o *openVolumes) put(jobID string, target int, v *restore.Volume) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expire()
	key := volumeKey(jobID, target)
	if old, ok := o.open[key]; ok {
		old.v.Close()
	}
	o.open[key] = &openVolume{v: v, used: o.now()}
}

// get returns the open target of a job, opening it (restore.OpenVolume)
// when this process did not prepare it.
func (o *openVolumes) get(jobID string, target int, t restore.Target) (*restore.Volume, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expire()
	key := volumeKey(jobID, target)
	if ov, ok := o.open[key]; ok {
		ov.used = o.now()
		return ov.v, nil
	}
	v, err := restore.OpenVolume(t)
	if err != nil {
		return nil, err
	}
	o.open[key] = &openVolume{v: v, used: o.now()}
	return v, nil
}

// take removes and returns the open target of a job, or nil.
func (o *openVolumes) take(jobID string, target int) *restore.Volume {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := volumeKey(jobID, target)
	ov, ok := o.open[key]
	if !ok {
		return nil
	}
	delete(o.open, key)
	return ov.v
}

// closeAll releases every open target (on shutdown).
func (o *openVolumes) closeAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for key, ov := range o.open {
		ov.v.Close()
		delete(o.open, key)
	}
}

// expire closes targets idle for volumeIdle. Called with mu held.
func (o *openVolumes) expire() {
	for key, ov := range o.open {
		if o.now().Sub(ov.used) > volumeIdle {
			ov.v.Close()
			delete(o.open, key)
		}
	}
}
