// Package retry wraps a store.Store so that its calls ride out an outage:
// the object store restarting, the network cut for a while, a server
// answering 503 or SlowDown. It is the restic backend/retry decorator for
// bulkbackup's stores:
//
//	st := retry.New(s3, retry.Config{MaxElapsed: 5 * time.Minute})
//
// A call that fails in a way that may pass (its error wraps
// store.ErrUnavailable, which dirstore and s3store wrap around such
// failures; see Transient) is tried again after a delay: about firstDelay
// first, doubling with each try up to maxDelay, less up to half at random so
// that workers that failed together do not return together. It is given up
// when Config.MaxElapsed has passed since the first try, with an
// *UnavailableError that wraps ErrUnavailable and the last try's error and
// names the store and how long it was tried:
//
//	repository s3://bucket/repo unavailable for 5m0s (64 tries, store timeout 5m0s): put chunks/ab/ab12…: store: unavailable: Put "http://…": dial tcp …: connect: connection refused
//
// Everything else is returned at once: a missing object, refused
// credentials, a full store, an invalid key, an error no store classified,
// and any error once the caller's context has ended (while the Store waits
// between tries, the context ending stops the wait and the call returns an
// error wrapping both the context's error and the last try's).
//
// Every method retries. Put can: stores write objects whole and atomically,
// so trying again after a failed or timed-out write stores the same object
// under the same key. Delete can: deleting a missing key is not an error. A
// List is retried only while it has yielded nothing: once the consumer has
// seen part of a listing, a failure is yielded as it is.
//
// Two hooks report the retrying. Config.OnRetry sees every retried failure
// of the Store, for logs and metrics. A NotifyFunc put in one call's
// context with WithNotify sees that call's failures and can stop it: a
// worker that holds a queue message for the chunk it is storing tells the
// queue the message is in progress, and gives up when its job has ended.
// The delay between tries never exceeds maxDelay, so a hook that keeps a
// message alive is called at least that often, plus the time a try takes.
package retry
