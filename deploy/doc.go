// Package deploy holds what operators load next to the service, not Go
// code: the Grafana dashboard (grafana/eventbus.json, importable as it is)
// and the Prometheus alert rules (prometheus/alerts.yml) for relay lag,
// transactions that hold the relay back, parked events, dead-letter growth
// and a relay without a leader; and an example configuration file
// (eventbus.example.yaml, loaded by a test of package config).
//
// It sits outside the architecture's layers: its test opens the service on
// the embedded default, drives an event through the HTTP API, the relay and
// a consumer, and checks that every metric the dashboard and the rules name
// is one the service actually registers, so that a renamed metric cannot
// silently empty a panel or disarm an alert. docs/operations.md explains
// each alert.
package deploy
