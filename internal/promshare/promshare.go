// Package promshare registers Prometheus collectors that several components
// of one process create alike (the consumers of several groups, two HTTP
// handlers) on one registry: the second registration reuses the first
// collector, so both components update the same series instead of failing.
//
// It is a leaf under the packages that export metrics: relay, consume and
// httpapi, whose collectors the service registers on one registry.
package promshare

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers *c with reg. When reg already holds a collector of the
// same description and type, *c becomes that collector. Any other failure
// (a metric of the same name with other labels or help) is returned, and *c
// is left as it was.
func Register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	err := reg.Register(*c)
	if err == nil {
		return nil
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			*c = existing
			return nil
		}
	}
	return err
}
