// Package modelservertest holds the modelserver's tests and benchmarks
// against its real peers, run in process: the featureserver (fed tiles
// through the embedded Kafka broker) and the metrics service. They live
// with the code that runs every service together, so the modelserver's own
// module requires only libs and proto.
package modelservertest
