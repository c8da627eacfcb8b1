package main

// Why a target is missed and what would fix it, shown next to a missed target.
// They come from investigating the runs (docs/benchmarks.md explains how); keep
// them true when the code changes.
const (
	causeRatio         = "to be investigated"
	causeRequests      = "to be investigated"
	causePublish       = "to be investigated"
	causeMounts        = "to be investigated"
	causeRSS           = "to be investigated"
	causeReadyToReturn = "to be investigated"
)
