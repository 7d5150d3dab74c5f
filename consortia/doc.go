// Package consortia owns consortiums: their definitions, and the engine that
// answers a request with one. The engine fans the request out to every
// member instance, waits for a quorum or the member deadline, shows the
// answers to the arbiter source-blind (labelled Response A, B, ... in a
// random order), reads the arbiter's tags as they stream, runs further
// rounds in which each member continues its own thread, and streams the
// final synthesis as the arbiter writes it. It keeps a Run record of every
// call.
//
// It knows nothing of HTTP: the proxy turns a Result and the synthesis
// deltas into OpenAI responses. Calls to providers go through upstream; the
// storage of runs and conversations belongs to cache.
package consortia
