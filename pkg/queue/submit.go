package queue

// Submitting jobs by request/reply. The stream-backed subjects
// (SubjectRequestBackup, SubjectRequestRestore, SubjectRequestCancel) keep
// a request until the coordinator takes it, also while it restarts; a
// request/reply there is answered by JetStream's publish acknowledgement,
// and the coordinator's answer goes to the request's reply_to. These
// subjects are endpoints of the micro service "bulkbackup" instead: they
// take the same messages and answer with the coordinator's JobAccepted at
// once (or not at all while no coordinator runs: nats.ErrNoResponders).
// Errors also come as micro error headers (Nats-Service-Error and
// Nats-Service-Error-Code), with the JobAccepted as the body.
const (
	// SubjectAPIBackup takes a BackupRequest and answers a JobAccepted.
	SubjectAPIBackup = "bulk.api.backup"
	// SubjectAPIRestore takes a RestoreRequest and answers a JobAccepted.
	SubjectAPIRestore = "bulk.api.restore"
	// SubjectAPICancel takes a CancelRequest and answers a JobAccepted.
	SubjectAPICancel = "bulk.api.cancel"
)

// The API's error codes, in JobAccepted.Code and the
// Nats-Service-Error-Code header.
const (
	// ErrorCodeInvalid: the request is malformed or invalid.
	ErrorCodeInvalid = 400
	// ErrorCodeNotFound: no job (or schedule) has that ID (or name).
	ErrorCodeNotFound = 404
	// ErrorCodeConflict: the job ID is taken by a job with other
	// parameters, or the job cannot be cancelled (it has already ended).
	ErrorCodeConflict = 409
	// ErrorCodeInternal: the coordinator failed; retrying may help.
	ErrorCodeInternal = 500
)
