package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// TestStepRetrying: a maintenance step the coordinator runs is tried again
// while the repository is unavailable, as a compressor's task would be
// redelivered, and not for any other failure.
func TestStepRetrying(t *testing.T) {
	t.Parallel()
	unavailable := fmt.Errorf("list chunks: %w", store.ErrUnavailable)
	other := errors.New("snapshot unreadable")
	waits := []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	tests := []struct {
		name      string
		fails     []error // the step's errors, one per call, then success
		wantCalls int
		wantErr   error
	}{
		{"succeeds at once", nil, 1, nil},
		{"unavailable, then succeeds", []error{unavailable, unavailable}, 3, nil},
		{"unavailable past every wait", []error{unavailable, unavailable, unavailable, unavailable}, 4, store.ErrUnavailable},
		{"another failure is not retried", []error{other}, 1, other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			jr := &jobRun{logger: slog.New(slog.DiscardHandler)}
			calls, alive := 0, 0
			step := func(ctx context.Context, g int, _ func()) (any, error) {
				calls++
				if calls <= len(tt.fails) {
					return nil, tt.fails[calls-1]
				}
				return "done", nil
			}
			d, err := jr.stepRetrying(t.Context(), "condemn", 3, func() { alive++ }, step, waits)
			if calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls, tt.wantCalls)
			}
			switch {
			case tt.wantErr == nil && (err != nil || d != "done"):
				t.Errorf("stepRetrying = %v, %v; want done", d, err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("stepRetrying error %v, want %v", err, tt.wantErr)
			}
			if alive != calls-1 {
				t.Errorf("alive called %d times, want once per retry (%d)", alive, calls-1)
			}
		})
	}
}
