package proxy

// RunSummary is runSummary, for the external tests that hold it to the
// run record it summarizes.
var RunSummary = runSummary
