// Package batch holds the long jobs behind consortium's batch commands
// (DESIGN.md, "Batch commands: dataset and eval"): reading prompt files,
// embedding and selecting a diverse subset (dataset select), answering
// prompts with a consortium (dataset generate), and scoring a consortium
// against its members (eval).
//
// Every job writes whole JSON lines only, to a file it can resume: a line
// is one write to a file opened for appending, a torn last line left by a
// crash is cut on the next open, and finished ids are skipped. Failures go
// to the output's sibling <out>.errors.jsonl. The package calls providers
// and consortiums through the small interfaces it declares (Consortium,
// Embedder, Caller); the command line builds them with internal/app and
// owns the flags, signals and exit codes.
package batch
